package test

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/daemon/config"
)

var pkgUpdate = flag.Bool("update", false,
	"rewrite the packaging files generated from the code (TestPackagingGenerated)")

// pkgRepo is the repository root.
func pkgRepo(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(file), ".."))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func pkgRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pkgRoff escapes text for a roff text line: backslashes, minus signs (so
// that options render and paste as ASCII "-"), and a leading control
// character.
func pkgRoff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// pkgManKeys is saslgate.conf(5)'s KEYS section, made from the key table.
func pkgManKeys() string {
	var b strings.Builder
	for _, k := range config.Keys() {
		b.WriteString(".TP\n.B " + k.Name + "\n" + pkgRoff(k.Doc) + "\n.br\n")
		meta := "Value: " + k.Syntax + "."
		if k.Default != "" {
			meta += " Default: " + k.Default + "."
		}
		if k.Flag != "" {
			meta += " Option: " + k.Flag + "."
		}
		if k.Repeatable {
			meta += " Repeatable: the entries of every line add up."
		}
		if k.Restart {
			meta += " Needs a restart: SIGHUP does not apply it."
		}
		b.WriteString(pkgRoff(meta) + "\n")
	}
	return b.String()
}

const (
	pkgKeysBegin = ".\\\" BEGIN GENERATED KEYS\n"
	pkgKeysEnd   = ".\\\" END GENERATED KEYS\n"
)

// The packaged files made from the code are up to date: the sample
// /etc/saslgate.conf is config.WriteSample's, and saslgate.conf(5)'s KEYS
// section lists every key with its documentation, type, default and option.
// -update rewrites both.
func TestPackagingGenerated(t *testing.T) {
	repo := pkgRepo(t)
	var sample bytes.Buffer
	if err := config.WriteSample(&sample); err != nil {
		t.Fatal(err)
	}
	manPath := filepath.Join(repo, "packaging/man/saslgate.conf.5")
	page := pkgRead(t, manPath)
	i, j := strings.Index(page, pkgKeysBegin), strings.Index(page, pkgKeysEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q ... %q markers", manPath, pkgKeysBegin, pkgKeysEnd)
	}
	i += len(pkgKeysBegin)
	files := map[string]string{
		filepath.Join(repo, "packaging/saslgate.conf"): sample.String(),
		manPath: page[:i] + pkgManKeys() + page[j:],
	}
	for path, want := range files {
		got, err := os.ReadFile(path)
		if err == nil && string(got) == want {
			continue
		}
		if *pkgUpdate {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", path)
			continue
		}
		t.Errorf("%s is not what the code generates (%v): run go test ./test -run TestPackagingGenerated -update", path, err)
	}
	// the sample sets nothing: every line is a comment or blank
	for n, l := range strings.Split(sample.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("sample line %d is not a comment: %q", n+1, l)
		}
	}
}

// The man pages render without a groff warning.
func TestPackagingManPagesRender(t *testing.T) {
	groff := need(t, "groff")[0]
	repo := pkgRepo(t)
	for _, page := range []string{"saslgate.8", "saslgate.conf.5"} {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.Join(repo, "packaging/man", page))
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", page, err, out)
		}
	}
}

// pkgNoFileBlocks returns the .nf/.fi blocks of a man page section as
// plain text.
func pkgNoFillBlocks(page, section string) []string {
	sec := pkgSection(page, section)
	unescape := strings.NewReplacer(`\-`, "-", `\e`, `\`, `\(lq`, `"`, `\(rq`, `"`)
	var blocks []string
	for rest := sec; ; {
		i := strings.Index(rest, "\n.nf\n")
		if i < 0 {
			return blocks
		}
		rest = rest[i+len("\n.nf\n"):]
		j := strings.Index(rest, "\n.fi\n")
		if j < 0 {
			return blocks
		}
		blocks = append(blocks, unescape.Replace(rest[:j])+"\n")
		rest = rest[j:]
	}
}

// pkgSection is the text of a man page's ".SH name" section, from its
// title line to the next section's.
func pkgSection(page, name string) string {
	for _, title := range []string{".SH " + name + "\n", `.SH "` + name + "\"\n"} {
		if i := strings.Index(page, "\n"+title); i >= 0 {
			rest := page[i+1+len(title):]
			if j := strings.Index(rest, "\n.SH "); j >= 0 {
				rest = rest[:j+1]
			}
			return "\n" + rest
		}
	}
	return ""
}

// What the documentation tells an admin to run is valid: every example
// config file in saslgate.conf(5), and the command line the service makes
// from the shipped /etc/default/saslgate, pass "serve --check".
func TestPackagingExamplesCheck(t *testing.T) {
	bin := saslgateBin(t)
	repo := pkgRepo(t)
	dir := t.TempDir()
	blocks := pkgNoFillBlocks(pkgRead(t, filepath.Join(repo, "packaging/man/saslgate.conf.5")), "EXAMPLES")
	if len(blocks) < 2 {
		t.Fatalf("saslgate.conf(5) EXAMPLES: %d example files, want 2 or more", len(blocks))
	}
	for i, b := range blocks {
		f := filepath.Join(dir, "example.conf")
		if err := os.WriteFile(f, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := run(t, "", bin, "serve", "--check", "--config", f); code != 0 {
			t.Errorf("example %d:\n%s--check exit %d: %s", i+1, b, code, stderr)
		}
	}
	// the unit's ExecStart, with the defaults file's MECH and FLAGS as
	// systemd would split them, and the shipped sample as the config file
	service := pkgRead(t, filepath.Join(repo, "systemd/saslgate.service"))
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/sbin/saslgate (.*)$`).FindStringSubmatch(service)
	if m == nil {
		t.Fatal("systemd/saslgate.service: no ExecStart=/usr/sbin/saslgate line")
	}
	script := `set -a; . "$1"; set +a; exec "$2" ` + m[1] + ` --check --config "$3"`
	cmd := exec.Command("sh", "-c", script, "sh", filepath.Join(repo, "packaging/default/saslgate"), bin,
		filepath.Join(repo, "packaging/saslgate.conf"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("%s with /etc/default/saslgate: %v\n%s", m[1], err, out)
	}
}

// Every Go module compiled into the binary is named in the packaged
// copyright file with its licence.
func TestPackagingCopyright(t *testing.T) {
	repo := pkgRepo(t)
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./cmd/saslgate")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	copyright := pkgRead(t, filepath.Join(repo, "packaging/copyright"))
	seen := map[string]bool{}
	for _, mod := range strings.Fields(string(out)) {
		if mod == "github.com/saslgate/saslgate" || seen[mod] {
			continue
		}
		seen[mod] = true
		if !strings.Contains(copyright, "\nFiles: "+mod+"\n") {
			t.Errorf("packaging/copyright has no \"Files: %s\" paragraph", mod)
		}
	}
}

// pkgManFiles parses saslgate(8)'s FILES section: the paths (".I /path"
// after ".TP") under "Installed by the package", and under "Used at run
// time".
func pkgManFiles(t *testing.T) (installed, runtime []string) {
	t.Helper()
	sec := pkgSection(pkgRead(t, filepath.Join(pkgRepo(t), "packaging/man/saslgate.8")), "FILES")
	var cur *[]string
	lines := strings.Split(sec, "\n")
	for i, l := range lines {
		switch {
		case l == `.SS "Installed by the package"`:
			cur = &installed
		case l == `.SS "Used at run time"`:
			cur = &runtime
		case l == ".TP" && cur != nil && i+1 < len(lines) && strings.HasPrefix(lines[i+1], ".I /"):
			*cur = append(*cur, strings.TrimPrefix(lines[i+1], ".I "))
		}
	}
	if len(installed) == 0 {
		t.Fatal(`saslgate(8) FILES: no paths under .SS "Installed by the package"`)
	}
	return installed, runtime
}

// pkgCmd runs a command with a time bound and returns its combined output.
func pkgCmd(t *testing.T, dir string, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return string(out), err
}

// pkgInstalled reports whether dpkg counts saslgate as present in any way
// (installed, half-installed, config-files).
func pkgInstalled(t *testing.T) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "saslgate").Output()
	return err == nil && string(out) != "not-installed" && string(out) != ""
}

func pkgPurge(t *testing.T) {
	t.Helper()
	if !pkgInstalled(t) {
		return
	}
	if out, err := pkgCmd(t, "", 2*time.Minute, "dpkg", "--purge", "saslgate"); err != nil {
		t.Errorf("dpkg --purge saslgate: %v\n%s", err, out)
	}
}

func pkgGunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// The .deb that make package builds installs with dpkg -i, puts every file
// where saslgate(8)'s FILES section says and nothing else, runs from the
// installed path, has the group the socket directory needs, starts and
// enables nothing, and dpkg --purge removes every file of it. The .rpm is
// built alongside (and its file list checked when rpm is at hand).
func TestPackageDeb(t *testing.T) {
	needRoot(t)
	need(t, "dpkg", "dpkg-deb", "dpkg-query", "make", "go", "gzip", "getent", "ldd")
	repo := pkgRepo(t)
	dist := t.TempDir()

	// an earlier run may have left it installed; this one must not
	pkgPurge(t)
	t.Cleanup(func() { pkgPurge(t) })

	if out, err := pkgCmd(t, repo, 15*time.Minute, "make", "--no-print-directory", "package", "DIST="+dist); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "saslgate_*_amd64.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "saslgate-*.x86_64.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package wrote debs %v and rpms %v, want one of each", debs, rpms)
	}
	deb, rpm := debs[0], rpms[0]
	if st, err := os.Stat(rpm); err != nil || st.Size() < 1<<20 {
		t.Errorf("rpm %s: %v, %v: want the binary in it (1 MiB or more)", rpm, err, st)
	}
	field := func(name string) string {
		out, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	version := field("Version")
	binVersion := strings.TrimSuffix(version, "-1") // nfpm's release
	depends := field("Depends")
	if !regexp.MustCompile(`^0\.1\.0~git\d{8}\.[0-9a-f]{7}(\.dirty)?-1$`).MatchString(version) {
		t.Errorf("package version %q, want 0.1.0~git<date>.<commit>[.dirty]-1", version)
	}

	installedFiles, _ := pkgManFiles(t)
	if out, err := pkgCmd(t, "", 2*time.Minute, "dpkg", "-i", deb); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	// dpkg's list of the package's files is the man page's, exactly
	out, err := exec.Command("dpkg", "-L", "saslgate").Output()
	if err != nil {
		t.Fatalf("dpkg -L: %v", err)
	}
	var listed []string
	for _, p := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		st, err := os.Lstat(p)
		if dst, derr := os.Stat(p); derr == nil && dst.IsDir() {
			continue // a directory, or a link to one (/lib -> usr/lib)
		}
		switch {
		case err != nil:
			t.Errorf("dpkg -L lists %s, which is missing: %v", p, err)
		default:
			listed = append(listed, p)
			if !st.Mode().IsRegular() {
				t.Errorf("%s: %v, want a regular file", p, st.Mode())
			}
		}
	}
	sort.Strings(listed)
	want := slices.Sorted(slices.Values(installedFiles))
	if !slices.Equal(listed, want) {
		t.Errorf("the package's files:\n  %s\nsaslgate(8) FILES, Installed by the package:\n  %s",
			strings.Join(listed, "\n  "), strings.Join(want, "\n  "))
	}

	// each is the file in the repository, and has its mode
	same := map[string]string{
		"/lib/systemd/system/saslgate.service": pkgRead(t, filepath.Join(repo, "systemd/saslgate.service")),
		"/lib/systemd/system/saslgate.socket":  pkgRead(t, filepath.Join(repo, "systemd/saslgate.socket")),
		"/usr/lib/tmpfiles.d/saslgate.conf":    pkgRead(t, filepath.Join(repo, "systemd/saslgate.tmpfiles")),
		"/etc/default/saslgate":                pkgRead(t, filepath.Join(repo, "packaging/default/saslgate")),
		"/etc/saslgate.conf":                   pkgRead(t, filepath.Join(repo, "packaging/saslgate.conf")),
		"/usr/share/doc/saslgate/README.md":    pkgRead(t, filepath.Join(repo, "README.md")),
		"/usr/share/doc/saslgate/copyright":    pkgRead(t, filepath.Join(repo, "packaging/copyright")),
	}
	for path, content := range same {
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Errorf("%s differs from the repository's (%v)", path, err)
		}
	}
	for path, src := range map[string]string{
		"/usr/share/man/man8/saslgate.8.gz":      "packaging/man/saslgate.8",
		"/usr/share/man/man5/saslgate.conf.5.gz": "packaging/man/saslgate.conf.5",
	} {
		if pkgGunzip(t, path) != pkgRead(t, filepath.Join(repo, src)) {
			t.Errorf("%s is not %s gzipped", path, src)
		}
	}
	for _, p := range listed {
		st, _ := os.Stat(p)
		wantMode := os.FileMode(0o644)
		if p == "/usr/sbin/saslgate" || p == "/usr/lib/saslgate/saslgate-metrics" {
			wantMode = 0o755
		}
		if st != nil && st.Mode().Perm() != wantMode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), wantMode)
		}
	}
	conffiles, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "saslgate").Output()
	for _, c := range []string{"/etc/default/saslgate", "/etc/saslgate.conf"} {
		if !strings.Contains(string(conffiles), " "+c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}

	// man finds the pages
	if manBin, err := exec.LookPath("man"); err == nil {
		for _, q := range [][]string{{"-w", "saslgate"}, {"-w", "5", "saslgate.conf"}} {
			out, err := exec.Command(manBin, q...).Output()
			if err != nil || !slices.Contains(installedFiles, strings.TrimSpace(string(out))) {
				t.Errorf("man %v: %v %q", q, err, out)
			}
		}
	} else {
		t.Logf("man not installed: the pages are checked by their paths only")
	}

	// it runs from the installed path and says the package's version
	for _, flag := range []string{"-v", "--version"} {
		stdout, stderr, code := run(t, "", "/usr/sbin/saslgate", flag)
		if code != 0 || !strings.HasPrefix(stdout, "saslgate "+binVersion+" (saslauthd 2.1.28 compatible)\nauthentication mechanisms: sasldb ") {
			t.Errorf("/usr/sbin/saslgate %s: exit %d, stdout %q, stderr %q; want version %s", flag, code, stdout, stderr, binVersion)
		}
	}

	// the libraries it links directly are the package's dependencies
	pkgCheckLinkedLibs(t, "/usr/sbin/saslgate", depends)
	for _, d := range []string{"libc6", "libpam0g", "libcrypt1"} {
		if !strings.Contains(depends, d+" (>=") {
			t.Errorf("Depends %q lacks %s", depends, d)
		}
	}

	// the group the socket's directory is made for
	if out, err := exec.Command("getent", "group", "sasl").Output(); err != nil {
		t.Errorf("getent group sasl: %v %q", err, out)
	}
	// nothing enabled, nothing started
	if links, _ := filepath.Glob("/etc/systemd/system/*/saslgate.*"); len(links) > 0 {
		t.Errorf("installing enabled units: %v", links)
	}
	if pids := pkgRunning("/usr/sbin/saslgate"); len(pids) > 0 {
		t.Errorf("installing started /usr/sbin/saslgate: pids %v", pids)
	}

	pkgCheckRPM(t, rpm, installedFiles)
	pkgCheckGroupScripts(t)
	pkgCheckAlternatives(t)

	// purge removes every file and directory of its own
	if out, err := pkgCmd(t, "", 2*time.Minute, "dpkg", "--purge", "saslgate"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	if pkgInstalled(t) {
		t.Errorf("saslgate still known to dpkg after --purge")
	}
	for _, p := range append(listed, "/usr/share/doc/saslgate", "/var/lib/saslgate") {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after purge (%v)", p, err)
		}
	}
	// the group was there before (Debian's base-passwd has it): purge keeps it
	if err := exec.Command("getent", "group", "sasl").Run(); err != nil {
		t.Errorf("purge removed the sasl group it did not create")
	}
}

// pkgRunning lists the processes running the program at path (other
// tests run bin/saslgate meanwhile).
func pkgRunning(path string) []string {
	var pids []string
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err == nil && target == path {
			pids = append(pids, filepath.Base(filepath.Dir(exe)))
		}
	}
	return pids
}

// pkgCheckLinkedLibs checks that the package owning each library the
// binary names (DT_NEEDED), as the dynamic linker resolves it, is in
// Depends.
func pkgCheckLinkedLibs(t *testing.T, bin, depends string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	needed, err := f.ImportedLibraries()
	f.Close()
	if err != nil || len(needed) == 0 {
		t.Fatalf("%s: DT_NEEDED %v: %v", bin, needed, err)
	}
	lddOut, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd: %v", err)
	}
	resolved := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\S+) => (/\S+)`).FindAllStringSubmatch(string(lddOut), -1) {
		resolved[m[1]] = m[2]
	}
	for _, lib := range needed {
		path := resolved[lib]
		if path == "" {
			t.Errorf("ldd does not resolve %s:\n%s", lib, lddOut)
			continue
		}
		// dpkg knows the path it installed, which may be behind /lib -> usr/lib
		var owner []byte
		for _, p := range []string{path, strings.TrimPrefix(path, "/usr"), "/usr" + path} {
			if owner, err = exec.Command("dpkg-query", "-S", p).Output(); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("no package owns %s", path)
			continue
		}
		pkg, _, _ := strings.Cut(string(owner), ":")
		if !regexp.MustCompile(`(^|, )` + regexp.QuoteMeta(pkg) + ` `).MatchString(depends) {
			t.Errorf("the binary links %s from %s, which Depends %q lacks", lib, pkg, depends)
		}
	}
}

// pkgNamespace runs a shell script as root in a private mount namespace,
// where it may mount copies over /etc and the like without the rest of the
// machine seeing them.
func pkgNamespace(t *testing.T, script string, args ...string) string {
	t.Helper()
	need(t, "unshare", "mount")
	out, err := pkgCmd(t, "", 2*time.Minute, "unshare", append([]string{"--mount", "--propagation", "private",
		"sh", "-ec", script, "sh"}, args...)...)
	if err != nil {
		t.Fatalf("in a private mount namespace: %v\n%s\nscript:\n%s", err, out, script)
	}
	return out
}

// The installed post-install makes a system group sasl when there is none,
// and purge removes it again unless sasl2-bin, which uses it too, is
// installed. Run on copies of /etc and /var/lib, since this machine has the
// group (Debian's base-passwd makes it).
func pkgCheckGroupScripts(t *testing.T) {
	t.Helper()
	const script = `
T=$1 mode=$2
mkdir -p "$T/etc" "$T/dpkg" "$T/scripts"
cp /var/lib/dpkg/info/saslgate.postinst /var/lib/dpkg/info/saslgate.postrm "$T/scripts/"
cp -a /etc/. "$T/etc/"
sed -i '/^sasl:/d' "$T/etc/group" "$T/etc/gshadow"
mount --bind /var/lib/dpkg "$T/dpkg"
mount --bind "$T/etc" /etc
mount -t tmpfs tmpfs /var/lib
if [ "$mode" = sasl2-bin ]; then mkdir /var/lib/dpkg && mount --bind "$T/dpkg" /var/lib/dpkg; fi
if getent group sasl; then echo "the copy still has the group"; exit 1; fi
sh "$T/scripts/saslgate.postinst" configure
echo "group: $(getent group sasl)"
test -e /var/lib/saslgate/sasl-group-created
sh "$T/scripts/saslgate.postrm" purge
if getent group sasl >/dev/null; then echo "after purge: kept"; else echo "after purge: removed"; fi
test ! -e /var/lib/saslgate
`
	modes := map[string]string{"alone": "after purge: removed"}
	if st, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "sasl2-bin").Output(); string(st) == "installed" {
		modes["sasl2-bin"] = "after purge: kept"
	} else {
		t.Logf("sasl2-bin not installed: purge keeping the group for it is not checked")
	}
	for mode, want := range modes {
		out := pkgNamespace(t, script, t.TempDir(), mode)
		// a system group's id is below 1000
		m := regexp.MustCompile(`(?m)^group: sasl:x:(\d+):$`).FindStringSubmatch(out)
		if m == nil || len(m[1]) > 3 || !strings.Contains(out, want) {
			t.Errorf("%s: post-install then purge:\n%s\nwant a system group sasl, then %q", mode, out, want)
		}
	}
}

// The REPLACING SASLAUTHD recipe of saslgate(8) works: its
// update-alternatives command, run as printed, makes saslauthd and
// testsaslauthd saslgate, and removing the package drops them. Run with
// private copies of /usr/sbin (without sasl2-bin's programs), /etc and the
// alternatives database.
func pkgCheckAlternatives(t *testing.T) {
	t.Helper()
	page := pkgRead(t, filepath.Join(pkgRepo(t), "packaging/man/saslgate.8"))
	var recipe string
	for _, b := range pkgNoFillBlocks(page, "REPLACING SASLAUTHD") {
		if strings.HasPrefix(b, "update-alternatives --install ") {
			recipe = b
		}
	}
	if recipe == "" {
		t.Fatal("saslgate(8) REPLACING SASLAUTHD: no update-alternatives --install example")
	}
	const script = `
T=$1 recipe=$2
mkdir -p "$T/sbin" "$T/etc" "$T/alt" "$T/scripts"
cp /var/lib/dpkg/info/saslgate.prerm "$T/scripts/"
cp -a /usr/sbin/. "$T/sbin/"
rm -f "$T/sbin/saslauthd" "$T/sbin/testsaslauthd"
cp -a /etc/. "$T/etc/"
cp -a /var/lib/dpkg/alternatives/. "$T/alt/"
mount --bind "$T/sbin" /usr/sbin
mount --bind "$T/etc" /etc
mount --bind "$T/alt" /var/lib/dpkg/alternatives
mount -t tmpfs tmpfs /var/log
sh -ec "$recipe"
echo "saslauthd is $(readlink -f /usr/sbin/saslauthd)"
echo "testsaslauthd is $(readlink -f /usr/sbin/testsaslauthd)"
/usr/sbin/saslauthd -v 2>&1
rc=0; /usr/sbin/testsaslauthd -u u -p p -f "$T/none/mux" 2>&1 || rc=$?
echo "testsaslauthd exit $rc"
sh "$T/scripts/saslgate.prerm" remove
if [ -e /usr/sbin/saslauthd ] || [ -L /usr/sbin/saslauthd ] || [ -e /usr/sbin/testsaslauthd ] || [ -L /usr/sbin/testsaslauthd ]; then
	echo "after remove: links left"
else
	echo "after remove: links gone"
fi
`
	out := pkgNamespace(t, script, t.TempDir(), recipe)
	for _, want := range []string{
		"saslauthd is /usr/sbin/saslgate\n",
		"testsaslauthd is /usr/sbin/saslgate\n",
		"saslauthd 2.1.28\nauthentication mechanisms: sasldb ",
		"connect() : No such file or directory\n",
		"testsaslauthd exit 255\n",
		"after remove: links gone\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the update-alternatives recipe:\n%s\noutput:\n%s\nlacks %q", recipe, out, want)
		}
	}
}

// pkgCheckRPM compares the rpm's file list with the man page's, the
// systemd directory being /usr/lib there.
func pkgCheckRPM(t *testing.T, rpm string, installed []string) {
	t.Helper()
	rpmBin, err := exec.LookPath("rpm")
	if err != nil {
		t.Logf("rpm not installed: the .rpm's file list is not checked")
		return
	}
	out, err := exec.Command(rpmBin, "-qlp", rpm).Output()
	if err != nil {
		t.Errorf("rpm -qlp: %v", err)
		return
	}
	var got []string
	for _, p := range strings.Fields(string(out)) {
		got = append(got, strings.Replace(p, "/usr/lib/systemd/system/", "/lib/systemd/system/", 1))
	}
	sort.Strings(got)
	want := slices.Sorted(slices.Values(installed))
	if !slices.Equal(got, want) {
		t.Errorf("rpm files (systemd paths mapped to /lib):\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
