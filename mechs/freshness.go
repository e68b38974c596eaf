package mechs

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"io/fs"
	"os"
	"reflect"
	"sync"
	"time"
)

// Freshness is implemented by a mechanism whose answers depend on local
// data that can change under a running daemon: a file such as sasldb2,
// /etc/shadow or /etc/passwd. The daemon's credential cache tags each entry
// with the generation seen before the back end was asked, and treats an
// entry with another generation as absent, so that a password changed in the
// file stops working at once rather than when the entry's TTL runs out.
//
// A mechanism that does not implement it (pam, rimap) is trusted for the
// cache's TTL, as saslauthd trusts every mechanism.
type Freshness interface {
	// Generation identifies the version of the data now. It must change
	// whenever a change to the data could change an answer. It runs for
	// every request, cache hits included, so it must be cheap (a few stat
	// calls) and safe for concurrent use. It returns GenUnknown when it
	// cannot tell: the cache is then neither read nor filled.
	Generation() uint64
}

// GenUnknown is the generation of data whose version cannot be told now (a
// stat failed; a file changed so recently that its timestamps would not show
// the next change). Answers given under it are never cached.
const GenUnknown uint64 = 0

// RacyWindow is how long after a file's last change its generation stays
// GenUnknown. A write landing in the same timestamp tick as a stat leaves
// the mtime and ctime as they were, so a stamp younger than the coarsest
// common tick (a jiffy on ext4, 2 s on FAT) cannot prove that nothing
// changed since. sasldb uses the same bound for its own reload.
const RacyWindow = 2 * time.Second

// CombineFreshness returns the Freshness of a mechanism as a whole: for a
// chain (anything with Steps() []Mechanism, such as *Chain), the
// combination of the generations of its steps that implement Freshness,
// GenUnknown as soon as one of them says GenUnknown.
//
// Each call draws a new random salt, so two calls never give the same
// generations: build it once per chain (next to SetAuth) and a chain
// replaced on reload starts with nothing cached, even one with the same
// mechanisms (their options may have changed). A chain with no file-backed
// step has one constant, never-unknown generation.
func CombineFreshness(m Mechanism) Freshness {
	c := &combined{salt: randomUint64()}
	c.add(m)
	return c
}

type combined struct {
	salt  uint64
	steps []Freshness
}

func (c *combined) add(m Mechanism) {
	if ch, ok := m.(interface{ Steps() []Mechanism }); ok {
		for _, s := range ch.Steps() {
			c.add(s)
		}
		return
	}
	if f, ok := m.(Freshness); ok {
		c.steps = append(c.steps, f)
	}
}

func (c *combined) Generation() uint64 {
	if len(c.steps) == 0 {
		return nonzero(c.salt)
	}
	var buf [8]byte
	var h maphash.Hash
	h.SetSeed(genSeed)
	binary.LittleEndian.PutUint64(buf[:], c.salt)
	h.Write(buf[:])
	for _, f := range c.steps {
		g := f.Generation()
		if g == GenUnknown {
			return GenUnknown
		}
		binary.LittleEndian.PutUint64(buf[:], g)
		h.Write(buf[:])
	}
	return nonzero(h.Sum64())
}

// FileGeneration is the generation of a set of files: a keyed hash of each
// one's device, inode, size, mode, mtime and ctime (nanoseconds), or of the
// fact that it does not exist. It follows symbolic links. It returns
// GenUnknown when a file cannot be stat'ed for another reason, or when one
// changed (mtime or ctime) less than racy ago, which includes a timestamp in
// the future (a clock set back: caching waits until the clock passes it);
// pass RacyWindow unless a test needs less. The value is stable only within
// one process.
func FileGeneration(racy time.Duration, paths ...string) uint64 {
	var h maphash.Hash
	h.SetSeed(genSeed)
	now := time.Now().UnixNano()
	var buf [48]byte
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			h.WriteString("\x00absent\x00")
			continue
		default:
			return GenUnknown
		}
		mtime := fi.ModTime().UnixNano()
		dev, ino, ctime := sysStamp(fi.Sys())
		if now-max(mtime, ctime) < int64(racy) {
			return GenUnknown
		}
		binary.LittleEndian.PutUint64(buf[0:], dev)
		binary.LittleEndian.PutUint64(buf[8:], ino)
		binary.LittleEndian.PutUint64(buf[16:], uint64(fi.Size()))
		binary.LittleEndian.PutUint64(buf[24:], uint64(fi.Mode()))
		binary.LittleEndian.PutUint64(buf[32:], uint64(mtime))
		binary.LittleEndian.PutUint64(buf[40:], uint64(ctime))
		h.Write(buf[:])
	}
	return nonzero(h.Sum64())
}

// genSeed keys every generation hash: values mean nothing outside this
// process, and nobody can aim for a collision.
var genSeed = maphash.MakeSeed()

func nonzero(g uint64) uint64 {
	if g == GenUnknown {
		return 1
	}
	return g
}

func randomUint64() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("mechs: no randomness: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// sysStamp reads the device, inode and ctime from a FileInfo's Sys(): a
// *syscall.Stat_t on Unix, whose field names differ between systems (Ctim
// on Linux, Ctimespec on the BSDs and macOS) and which does not exist
// elsewhere. Reflection keeps this file free of build tags; the field
// positions are looked up once per type. What is missing reads as zero.
func sysStamp(sys any) (dev, ino uint64, ctime int64) {
	v := reflect.ValueOf(sys)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, 0, 0
	}
	f := sysFieldsOf(v.Type())
	if f.dev != nil {
		dev = uintOf(v.FieldByIndex(f.dev))
	}
	if f.ino != nil {
		ino = uintOf(v.FieldByIndex(f.ino))
	}
	if f.sec != nil && f.nsec != nil {
		ctime = int64(uintOf(v.FieldByIndex(f.sec)))*1e9 + int64(uintOf(v.FieldByIndex(f.nsec)))
	}
	return dev, ino, ctime
}

type sysFields struct{ dev, ino, sec, nsec []int }

var sysFieldCache sync.Map // reflect.Type -> *sysFields

func sysFieldsOf(t reflect.Type) *sysFields {
	if f, ok := sysFieldCache.Load(t); ok {
		return f.(*sysFields)
	}
	f := &sysFields{}
	if sf, ok := t.FieldByName("Dev"); ok && isInt(sf.Type) {
		f.dev = sf.Index
	}
	if sf, ok := t.FieldByName("Ino"); ok && isInt(sf.Type) {
		f.ino = sf.Index
	}
	for _, name := range []string{"Ctim", "Ctimespec"} {
		sf, ok := t.FieldByName(name)
		if !ok || sf.Type.Kind() != reflect.Struct {
			continue
		}
		sec, ok1 := sf.Type.FieldByName("Sec")
		nsec, ok2 := sf.Type.FieldByName("Nsec")
		if ok1 && ok2 && isInt(sec.Type) && isInt(nsec.Type) {
			f.sec = append(append([]int(nil), sf.Index...), sec.Index...)
			f.nsec = append(append([]int(nil), sf.Index...), nsec.Index...)
			break
		}
	}
	sysFieldCache.Store(t, f)
	return f
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func uintOf(v reflect.Value) uint64 {
	if v.CanInt() {
		return uint64(v.Int())
	}
	return v.Uint()
}
