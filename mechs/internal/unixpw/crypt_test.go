//go:build linux && cgo

package unixpw

import (
	"strings"
	"sync"
	"testing"
)

const testPw = "Secret123"

// format is one libxcrypt hash method.
type format struct {
	name   string
	prefix string // crypt_gensalt prefix; "" is traditional DES
	// maxLen is how many bytes of the password the method reads (0: all).
	// DES reads 8, so "Secret12" and "Secret123x" match "Secret123": that is
	// crypt(3), and saslauthd, not a bug here.
	maxLen int
}

var formats = []format{
	{name: "yescrypt", prefix: "$y$"},
	{name: "gost-yescrypt", prefix: "$gy$"},
	{name: "scrypt", prefix: "$7$"},
	{name: "sha512crypt", prefix: "$6$"},
	{name: "sha256crypt", prefix: "$5$"},
	{name: "md5crypt", prefix: "$1$"},
	{name: "bcrypt", prefix: "$2b$"},
	{name: "bcrypt-2y", prefix: "$2y$"},
	{name: "sha1crypt", prefix: "$sha1$"},
	{name: "sunmd5", prefix: "$md5"},
	{name: "bsdicrypt", prefix: "_"},
	{name: "descrypt", prefix: "", maxLen: 8},
}

// vectors are fixed hashes of testPw, made once with
//
//	perl -e 'print crypt("Secret123", $ARGV[0])' SETTING
//
// on Debian 12 (libxcrypt 4.4.33). They catch a change in how the library
// reads stored hashes, which hashes made at test time cannot.
var vectors = []struct {
	name, hash string
	maxLen     int
}{
	{"yescrypt", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$Ioiybz3pkvIVu0vzYIKBmUe7gDpUL1aqT6ByDN1L2JA", 0},
	{"gost-yescrypt", "$gy$j9T$nsEOwBkhgBH3ZnKVszKZA/$TIZMjPEJ9j5binlPlfaFr9CfGp17vicSJaujmFLXThA", 0},
	{"scrypt", "$7$CU..../....2dBMIhsAG3W6H3O2mqIn./$PBLaOp9JPuazJlwTYF.G.IIWdWbitI1.fP7vTlutHO0", 0},
	{"sha512crypt", "$6$saltsalt$596V/oWeqDUXikIcakwaVX6pWhdXYIaQpIw8X3rtkywYRQfVfT70YEfXA4yOmR83SMYxs3GVnB5Ma856rkf9Q1", 0},
	{"sha512crypt-rounds", "$6$rounds=10000$saltsalt$dKayfFsv020l56QGopYk7lPUkJzx9NLB9ifK.ntNTH4YYlRJcv.c980mB/tO70HUvyHy1zKG4seo/sGIldVWh.", 0},
	{"sha256crypt", "$5$saltsalt$3rYeBUMSae1YnhP7N3.DIDpfX6OvfsbhXrJI9OLSoC9", 0},
	{"sha256crypt-rounds", "$5$rounds=10000$saltsalt$kLn3M5YF.uZ2DVefXO43DpogqYzBHCSb/mDkUdJsMI8", 0},
	{"md5crypt", "$1$saltsalt$Fyu1R/jDOOkg6nUr/VI0i0", 0},
	{"bcrypt-2b", "$2b$05$abcdefghijklmnopqrstuurf4DiOV/5.JspqcETuak2nXZf5Es.tu", 0},
	{"bcrypt-2y", "$2y$05$abcdefghijklmnopqrstuurf4DiOV/5.JspqcETuak2nXZf5Es.tu", 0},
	{"bcrypt-2a", "$2a$05$abcdefghijklmnopqrstuurf4DiOV/5.JspqcETuak2nXZf5Es.tu", 0},
	{"sha1crypt", "$sha1$10000$saltsalt$XQJfbpsmjTFR7Ns9Ls3L.Y8AhWR0", 0},
	{"sunmd5", "$md5,rounds=1000$saltsalt$$/wYJtP1vdJnSnmqS2swex1", 0},
	{"bsdicrypt", "_J9..salt7axjAAygHhM", 0},
	{"descrypt", "abwxqTFirElb6", 8},
	{"nthash", "$3$$63647965f13544c6551d5fdb7ffd13e0", 0},
}

// checkHash runs the standard table against a hash of testPw.
func checkHash(t *testing.T, hash string, maxLen int) {
	t.Helper()
	truncates := maxLen > 0 && maxLen < len(testPw)
	cases := []struct {
		name string
		pw   string
		hash string
		want bool
	}{
		{"right password", testPw, hash, true},
		{"wrong password", "secret123", hash, false},
		{"empty password", "", hash, false},
		{"password prefix", testPw[:len(testPw)-1], hash, truncates},
		{"password extended", testPw + "x", hash, truncates},
		{"NUL then junk", testPw + "\x00junk", hash, false},
		{"locked !", testPw, "!" + hash, false},
		{"locked !!", testPw, "!!" + hash, false},
		{"locked *LK*", testPw, "*LK*" + hash, false},
		{"hash with a changed last byte", testPw, hash[:len(hash)-1] + flip(hash[len(hash)-1]), false},
		{"hash prefix", testPw, hash[:len(hash)-1], false},
		{"hash extended", testPw, hash + "A", false},
	}
	for _, c := range cases {
		if got := Verify(c.pw, c.hash); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestVerifyGenerated(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			setting, err := gensalt(f.prefix)
			if err != nil {
				t.Fatalf("gensalt(%q): %v", f.prefix, err)
			}
			hash, err := cryptHash(testPw, setting)
			if err != nil {
				t.Fatalf("crypt(%q): %v", setting, err)
			}
			if !strings.HasPrefix(hash, f.prefix) || hash == setting {
				t.Fatalf("hash %q does not look like a %s hash", hash, f.name)
			}
			checkHash(t, hash, f.maxLen)
		})
	}
}

func TestVerifyVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			checkHash(t, v.hash, v.maxLen)
		})
	}
}

// TestVerifyUnusableHashes: whatever the password, these never match. The
// system writes them for locked accounts ("!", "!*", "!!"), accounts with no
// password ("*", "x" in passwd when the hash is in shadow) and empty fields.
// crypt_rn returns NULL (EINVAL) for all of them, so they fall back to the
// dummy hash.
func TestVerifyUnusableHashes(t *testing.T) {
	for _, h := range []string{"", "!", "!!", "!*", "*", "x", "*NP*", "*LK*", "*0", "*1", "a", "$y$", "$6$", "$y$j9T$", "$2b$05$"} {
		for _, pw := range []string{testPw, "", h, "*0", "*1"} {
			if Verify(pw, h) {
				t.Errorf("Verify(%q, %q) = true", pw, h)
			}
		}
	}
}

// TestVerifyEmptyPassword: an empty password matches its own hash. The
// protocol never delivers one (saslauthd answers "NULL password received"
// first), but crypt has no such rule and Verify adds none.
func TestVerifyEmptyPassword(t *testing.T) {
	h, err := Hash("", "$6$")
	if err != nil {
		t.Fatal(err)
	}
	if !Verify("", h) || Verify(" ", h) {
		t.Fatal("empty password against its own hash")
	}
}

func TestVerifyUTF8(t *testing.T) {
	const pw = "pässwörd mit Leerzeichen ☃ "
	for _, prefix := range []string{"$y$", "$6$", "$2b$"} {
		h, err := Hash(pw, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(pw, h) {
			t.Errorf("%s: right UTF-8 password refused", prefix)
		}
		if Verify(strings.TrimSpace(pw), h) {
			t.Errorf("%s: password without its trailing space accepted", prefix)
		}
		// NFD form of the same text: different bytes, must not match
		if Verify(strings.Replace(pw, "ä", "a\u0308", 1), h) {
			t.Errorf("%s: differently normalised password accepted", prefix)
		}
	}
}

func TestHash(t *testing.T) {
	h, err := Hash(testPw, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$y$") {
		t.Errorf("preferred method hash = %q, want yescrypt", h)
	}
	h2, err := Hash(testPw, "")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Error("two hashes share a salt")
	}
	if _, err := Hash(testPw, "$zz$"); err == nil {
		t.Error("unknown prefix accepted")
	}
	if _, err := Hash("a\x00b", "$6$"); err == nil {
		t.Error("password with NUL accepted")
	}
}

func TestDummy(t *testing.T) {
	if !strings.HasPrefix(dummySetting, "$y$") || dummySetting == fallbackDummy {
		t.Errorf("dummy setting %q: want a generated yescrypt setting", dummySetting)
	}
	// the fallback must be a setting libxcrypt accepts, or the dummy path
	// would cost nothing
	if _, err := cryptHash(testPw, fallbackDummy); err != nil {
		t.Errorf("fallback dummy refused: %v", err)
	}
	if _, err := cryptHash(testPw, dummySetting); err != nil {
		t.Errorf("dummy refused: %v", err)
	}
	if VerifyDummy(testPw) || VerifyDummy("") || VerifyDummy("a\x00b") {
		t.Error("VerifyDummy returned true")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	hashes := map[string]string{}
	for _, p := range []string{"$y$", "$6$", "$2b$", "$1$"} {
		h, err := Hash(testPw, p)
		if err != nil {
			t.Fatal(err)
		}
		hashes[p] = h
	}
	var wg sync.WaitGroup
	for i := range 24 {
		for p, h := range hashes {
			wg.Go(func() {
				pw, want := testPw, true
				if i%2 == 1 {
					pw, want = testPw+"!", false
				}
				if got := Verify(pw, h); got != want {
					t.Errorf("%s: Verify = %v, want %v", p, got, want)
				}
			})
		}
	}
	wg.Wait()
}

// BenchmarkVerify compares a known user's check with an unknown user's
// (VerifyDummy) and a locked user's: the three should cost the same for
// yescrypt, the dummy's method.
func BenchmarkVerify(b *testing.B) {
	for _, p := range []struct{ name, prefix string }{{"yescrypt", "$y$"}, {"sha512crypt", "$6$"}} {
		h, err := Hash(testPw, p.prefix)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(p.name+"/right", func(b *testing.B) {
			for b.Loop() {
				Verify(testPw, h)
			}
		})
		b.Run(p.name+"/wrong", func(b *testing.B) {
			for b.Loop() {
				Verify("wrong", h)
			}
		})
		b.Run(p.name+"/locked", func(b *testing.B) {
			for b.Loop() {
				Verify(testPw, "!"+h)
			}
		})
	}
	b.Run("unknown-user-dummy", func(b *testing.B) {
		for b.Loop() {
			VerifyDummy(testPw)
		}
	})
}
