package sasldb

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadFile_matchesDBDump checks the reader against Berkeley DB itself,
// on the committed files and on files made now.
func TestReadFile_matchesDBDump(t *testing.T) {
	needTool(t, "db5.3_dump")
	paths := []string{}
	for _, fx := range fixtures() {
		paths = append(paths, filepath.Join("testdata", fx.file))
	}
	if _, err := exec.LookPath("saslpasswd2"); err == nil {
		// realm from the host name, a rewritten password, a deleted user
		p := filepath.Join(t.TempDir(), "live.db")
		saslpasswd2(t, p, user{"dave", "", "Pw0rd"})
		saslpasswd2(t, p, user{"erin", "example.com", "Pw1"})
		saslpasswd2(t, p, user{"dave", "", "changed"})
		saslpasswd2(t, p, user{"frank", "example.com", pattern(5000)})
		saslpasswd2Delete(t, p, user{"erin", "example.com", ""})
		paths = append(paths, p)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			checkContent(t, f, dbDump(t, p))
		})
	}
}

func TestFile_Entries(t *testing.T) {
	f, err := ReadFile("testdata/basic.db")
	if err != nil {
		t.Fatal(err)
	}
	var want []Entry
	for _, u := range basicUsers {
		want = append(want, Entry{u.login, u.realm, PasswordProperty})
	}
	slices.SortFunc(want, func(a, b Entry) int {
		return strings.Compare(a.Login+"\x00"+a.Realm, b.Login+"\x00"+b.Realm)
	})
	if got := f.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() =\n%q\nwant\n%q", got, want)
	}
}

func TestFile_LookupCopies(t *testing.T) {
	f, err := ReadFile("testdata/basic.db")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := f.Lookup("dave", fixtureHost, PasswordProperty)
	if !ok || string(v) != "Pw0rd" {
		t.Fatalf("Lookup = %q, %v", v, ok)
	}
	v[0] = 'X'
	if v, _ := f.Lookup("dave", fixtureHost, PasswordProperty); string(v) != "Pw0rd" {
		t.Fatalf("Lookup returned the stored bytes, not a copy: now %q", v)
	}
	for _, k := range [][3]string{
		{"dave", "", PasswordProperty},
		{"dave@" + fixtureHost, "", PasswordProperty},
		{"DAVE", fixtureHost, PasswordProperty},
		{"dave", fixtureHost, "cmusaslsecretPLAIN"},
		{"dave", fixtureHost + ".", PasswordProperty},
	} {
		if _, ok := f.Lookup(k[0], k[1], k[2]); ok {
			t.Errorf("Lookup(%q) found something", k)
		}
	}
}

func TestReadFile_osErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFile(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	if _, err := ReadFile(dir); !errors.Is(err, errNotRegular) {
		t.Errorf("directory: %v, want errNotRegular", err)
	}
	fifo := filepath.Join(dir, "fifo")
	mkfifo(t, fifo)
	done := make(chan error, 1)
	go func() { _, err := ReadFile(fifo); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, errNotRegular) {
			t.Errorf("FIFO: %v, want errNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile blocked on a FIFO")
	}
	_, err := ReadFile(dir)
	if !strings.HasPrefix(err.Error(), "mechs/sasldb: ") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q lacks the prefix or the path", err)
	}
}

// tiny512.db (little-endian, 512-byte pages, no checksum):
//
//	page 0 metadata, max_bucket 1
//	page 1 bucket 0: dave -> Pw0rd
//	page 2 bucket 1: erin -> off-page item (page 3, 600 bytes)
//	page 3 overflow, next 4
//	page 4 overflow, last
const tinyPS = 512

func pageOff(n int) int { return n * tinyPS }

func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func le16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }

// itemOff is where item i of page n starts.
func itemOff(b []byte, n, i int) int {
	return pageOff(n) + int(binary.LittleEndian.Uint16(b[pageOff(n)+pageHeaderSize+2*i:]))
}

func TestParse_corrupt(t *testing.T) {
	base := readTestdata(t, "tiny512.db")
	if m, err := parseDB("tiny", base); err != nil || len(m) != 2 {
		t.Fatalf("tiny512.db: %v, %d keys", err, len(m))
	}
	tests := []struct {
		name  string
		patch func(b []byte) []byte
		want  string // in the error
	}{
		{"empty", func(b []byte) []byte { return nil }, "too short"},
		{"511 bytes", func(b []byte) []byte { return b[:511] }, "too short"},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)-100] }, "not a multiple of the page size"},
		{"truncated at a page", func(b []byte) []byte { return b[:pageOff(4)] }, "cannot fit in the rest of the file"},
		{"zeroed metadata", func(b []byte) []byte { clear(b[:tinyPS]); return b }, "not a Berkeley DB hash file"},
		{"random bytes", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}, "not a Berkeley DB hash file"},
		{"btree", func(b []byte) []byte { le32(b, 12, btreeMagic); return b }, "btree"},
		{"byte-swapped magic only", func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:], hashMagic); return b }, "hash version"},
		{"version 7", func(b []byte) []byte { le32(b, 16, 7); return b }, "hash version 7"},
		{"page size not a power of two", func(b []byte) []byte { le32(b, 20, 1000); return b }, "invalid page size"},
		{"page size larger than the file", func(b []byte) []byte { le32(b, 20, 65536); return b }, "not a multiple"},
		{"encrypted", func(b []byte) []byte { b[24] = 1; return b }, "encrypted"},
		{"metadata page type", func(b []byte) []byte { b[25] = pHash; return b }, "not hash metadata"},
		{"partitioned", func(b []byte) []byte { b[26] = metaPartRange; return b }, "partitioned"},
		{"sub-databases", func(b []byte) []byte { le32(b, 48, hashSubDB); return b }, "several databases"},
		{"too many buckets", func(b []byte) []byte { le32(b, 72, 0xffffffff); return b }, "do not fit"},
		{"spares outside the file", func(b []byte) []byte { le32(b, 96+4, 1000); return b }, "outside the file"},
		{"spares wrap around", func(b []byte) []byte { le32(b, 96+4, 0xffffffff); return b }, "outside the file"},
		{"two buckets on one page", func(b []byte) []byte { le32(b, 96+4, 0); return b }, "reached twice"},
		{"bucket page number", func(b []byte) []byte { le32(b, pageOff(2)+8, 7); return b }, "says it is page 7"},
		{"bucket page type", func(b []byte) []byte { b[pageOff(2)+25] = pOverflow; return b }, "not a hash page"},
		{"bucket chain loop", func(b []byte) []byte { le32(b, pageOff(2)+16, 2); return b }, "reached twice"},
		{"bucket chain into other bucket", func(b []byte) []byte { le32(b, pageOff(1)+16, 2); return b }, "reached twice"},
		{"bucket chain to overflow page", func(b []byte) []byte { le32(b, pageOff(1)+16, 4); return b }, "not a hash page"},
		{"odd item count", func(b []byte) []byte { le16(b, pageOff(1)+20, 1); return b }, "odd number"},
		{"index larger than the page", func(b []byte) []byte { le16(b, pageOff(1)+20, 0xfffe); return b }, "overflows the page"},
		{"item offset past the page", func(b []byte) []byte { le16(b, pageOff(1)+pageHeaderSize, 0xffff); return b }, "outside"},
		{"item offset inside the index", func(b []byte) []byte { le16(b, pageOff(1)+pageHeaderSize+2, 10); return b }, "outside"},
		{"items out of order", func(b []byte) []byte {
			le16(b, pageOff(1)+pageHeaderSize+2, uint16(tinyPS-1))
			return b
		}, "outside"},
		{"unknown item type", func(b []byte) []byte { b[itemOff(b, 1, 0)] = 9; return b }, "unknown type 9"},
		{"duplicate item", func(b []byte) []byte { b[itemOff(b, 1, 1)] = hDuplicate; return b }, "duplicate data items"},
		{"off-duplicate item", func(b []byte) []byte { b[itemOff(b, 2, 1)] = hOffdup; return b }, "duplicate data items"},
		{"off-page item too short", func(b []byte) []byte { b[itemOff(b, 1, 1)] = hOffpage; return b }, "off-page reference of"},
		{"off-page length beyond the file", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+8, 0xffffffff); return b }, "cannot fit"},
		{"off-page length too long", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+8, 700); return b }, "overflow chain holds 600 bytes, the item says 700"},
		{"off-page length too short", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+8, 500); return b }, "inconsistent"},
		{"off-page to page 0", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+4, 0); return b }, "the item says 600"},
		{"off-page to a bucket page", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+4, 1); return b }, "reached twice"},
		{"off-page outside the file", func(b []byte) []byte { le32(b, itemOff(b, 2, 1)+4, 99); return b }, "outside the file"},
		{"overflow page type", func(b []byte) []byte { b[pageOff(4)+25] = pHash; return b }, "not overflow"},
		{"overflow page number", func(b []byte) []byte { le32(b, pageOff(4)+8, 3); return b }, "says it is page 3"},
		{"overflow chain loop", func(b []byte) []byte { le32(b, pageOff(4)+16, 3); return b }, "reached twice"},
		{"overflow self loop", func(b []byte) []byte { le32(b, pageOff(3)+16, 3); return b }, "reached twice"},
		{"overflow length zero", func(b []byte) []byte { le16(b, pageOff(4)+22, 0); return b }, "inconsistent"},
		{"overflow length past the page", func(b []byte) []byte { le16(b, pageOff(3)+22, 0xffff); return b }, "inconsistent"},
		{"duplicate key", func(b []byte) []byte {
			// cut erin's value to its first overflow page, and put a copy
			// of bucket 0's page (dave) in page 4, chained after bucket 1
			le32(b, itemOff(b, 2, 1)+8, tinyPS-pageHeaderSize)
			le32(b, pageOff(3)+16, 0)
			copy(b[pageOff(4):pageOff(5)], b[pageOff(1):pageOff(2)])
			le32(b, pageOff(4)+8, 4)
			le32(b, pageOff(2)+16, 4)
			return b
		}, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.patch(slices.Clone(base))
			m, err := parseDB("tiny512.db", b)
			if err == nil {
				t.Fatalf("no error; %d keys", len(m))
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "mechs/sasldb: ") {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// An empty bucket whose page was allocated but never written reads as
// zeros; Berkeley DB takes it for an empty page, and so must we.
func TestParse_unwrittenBucketPage(t *testing.T) {
	b := readTestdata(t, "tiny512.db")
	clear(b[pageOff(1):pageOff(2)])
	m, err := parseDB("tiny512.db", b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m[key("erin", "example.com", PasswordProperty)]; !ok || len(m) != 1 {
		t.Fatalf("got %d keys", len(m))
	}
}

// TestParse_mutations is a short, deterministic stand-in for the fuzzer
// that runs with every go test: damaged files must give an error or a
// result, never a panic or a hang.
func TestParse_mutations(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for _, fx := range fixtures() {
		base := readTestdata(t, fx.file)
		n := 2000
		if testing.Short() {
			n = 200
		}
		for i := 0; i < n; i++ {
			b := slices.Clone(base)
			for j := 0; j < 1+r.IntN(8); j++ {
				switch r.IntN(3) {
				case 0: // one random byte
					b[r.IntN(len(b))] = byte(r.Uint32())
				case 1: // a small integer, likely to be taken for a page number or length
					off := r.IntN(len(b) - 4)
					binary.LittleEndian.PutUint32(b[off:], uint32(r.IntN(64)))
				case 2: // the same in the other byte order
					off := r.IntN(len(b) - 4)
					binary.BigEndian.PutUint32(b[off:], uint32(r.IntN(64)))
				}
			}
			checkParse(t, b)
		}
	}
}

// checkParse is the property shared with the fuzzer.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	m, err := parseDB("fuzz", b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("error %v does not wrap ErrFormat", err)
		}
		return
	}
	// every byte of every key and value comes from a distinct byte of the
	// file: the result cannot be larger than the input
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
	}
	if total > len(b) {
		t.Fatalf("%d bytes of keys and values from a %d-byte file", total, len(b))
	}
	f := &File{m: m}
	for _, e := range f.Entries() {
		if _, ok := f.Lookup(e.Login, e.Realm, e.Property); !ok {
			t.Fatalf("entry %q not found by Lookup", e)
		}
	}
}
