package doctor

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Account is a user as the kernel sees a process running as it: after
// initgroups, which is what Postfix's daemons do before they drop root.
type Account struct {
	Name   string
	UID    int
	GID    int   // the primary group
	Groups []int // every group, the primary one included
}

// Accounts looks users and groups up.
type Accounts interface {
	// User returns the named user; an error when there is none.
	User(name string) (Account, error)
	// UserName returns a user's name, or its number as text.
	UserName(uid int) string
	// GroupName returns a group's name, or its number as text.
	GroupName(gid int) string
	// GroupID returns a group's number; false when there is none.
	GroupID(name string) (int, bool)
}

// nssAccounts asks the system (NSS through os/user).
type nssAccounts struct{}

func (nssAccounts) User(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, fmt.Errorf("doctor: %w", err)
	}
	a := Account{Name: name}
	if a.UID, err = strconv.Atoi(u.Uid); err != nil {
		return Account{}, fmt.Errorf("doctor: user %s: uid %q", name, u.Uid)
	}
	if a.GID, err = strconv.Atoi(u.Gid); err != nil {
		return Account{}, fmt.Errorf("doctor: user %s: gid %q", name, u.Gid)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("doctor: groups of %s: %w", name, err)
	}
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil {
			a.Groups = append(a.Groups, g)
		}
	}
	if !slices.Contains(a.Groups, a.GID) {
		a.Groups = append(a.Groups, a.GID)
	}
	return a, nil
}

func (nssAccounts) UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func (nssAccounts) GroupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

func (nssAccounts) GroupID(name string) (int, bool) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(g.Gid)
	return n, err == nil
}

// fileAccounts reads /etc/passwd and /etc/group under a root: what --root
// uses, since a fixture's users are not the system's.
type fileAccounts struct {
	users  map[string]Account
	names  map[int]string
	groups map[int]string
	gids   map[string]int
}

func readAccounts(r rootFS) (*fileAccounts, error) {
	a := &fileAccounts{users: map[string]Account{}, names: map[int]string{}, groups: map[int]string{}, gids: map[string]int{}}
	members := map[string][]int{}
	gb, err := r.readFile("/etc/group")
	if err != nil && !isNotExist(err) {
		return nil, err
	}
	eachRecord(gb, func(f []string) {
		if len(f) < 4 {
			return
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return
		}
		if _, dup := a.groups[gid]; !dup {
			a.groups[gid] = f[0]
		}
		if _, dup := a.gids[f[0]]; !dup {
			a.gids[f[0]] = gid
		}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members[m] = append(members[m], gid)
			}
		}
	})
	pb, err := r.readFile("/etc/passwd")
	if err != nil && !isNotExist(err) {
		return nil, err
	}
	eachRecord(pb, func(f []string) {
		if len(f) < 4 {
			return
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return
		}
		if _, dup := a.users[f[0]]; dup {
			return
		}
		if _, dup := a.names[uid]; !dup {
			a.names[uid] = f[0]
		}
		groups := append([]int{gid}, members[f[0]]...)
		slices.Sort(groups)
		a.users[f[0]] = Account{Name: f[0], UID: uid, GID: gid, Groups: slices.Compact(groups)}
	})
	return a, nil
}

// eachRecord calls fn with the colon-separated fields of every line that
// is not blank or a comment.
func eachRecord(b []byte, fn func([]string)) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

func (a *fileAccounts) User(name string) (Account, error) {
	u, ok := a.users[name]
	if !ok {
		return Account{}, fmt.Errorf("doctor: user %s: not in /etc/passwd", name)
	}
	return u, nil
}

func (a *fileAccounts) UserName(uid int) string {
	if n, ok := a.names[uid]; ok {
		return n
	}
	return strconv.Itoa(uid)
}

func (a *fileAccounts) GroupName(gid int) string {
	if n, ok := a.groups[gid]; ok {
		return n
	}
	return strconv.Itoa(gid)
}

func (a *fileAccounts) GroupID(name string) (int, bool) {
	g, ok := a.gids[name]
	return g, ok
}

// access reports whether acct may use a file with the given owner and
// permission bits for want (a mask of the "other" bits: 1 search/execute,
// 2 write, 4 read), as the kernel decides: the owner's bits if it owns the
// file, else the group's if it is in the group, else the others'.
func access(acct Account, uid, gid int, perm fs.FileMode, want fs.FileMode) bool {
	switch {
	case acct.UID == 0:
		return true
	case acct.UID == uid:
		return perm>>6&want == want
	case slices.Contains(acct.Groups, gid):
		return perm>>3&want == want
	}
	return perm&want == want
}
