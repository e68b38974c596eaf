//go:build linux && cgo

package unixpw

/*
#cgo LDFLAGS: -lcrypt
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// sg_crypt hashes phrase with setting into out (CRYPT_OUTPUT_SIZE bytes)
// with the thread-safe crypt_rn. It returns 0, or an errno value when
// libxcrypt refuses the setting (crypt_rn's NULL; a '*' failure token is
// treated the same, though crypt_rn does not produce one). The 32 KiB work
// area is C memory, zeroed before it is freed: it held the phrase's hash.
static int sg_crypt(const char *phrase, const char *setting, char *out) {
	struct crypt_data *d = calloc(1, sizeof *d);
	if (d == NULL) {
		return ENOMEM;
	}
	errno = 0;
	const char *r = crypt_rn(phrase, setting, d, (int)sizeof *d);
	int err = 0;
	if (r == NULL || r[0] == '*' || strlen(r) >= CRYPT_OUTPUT_SIZE) {
		err = errno != 0 ? errno : EINVAL;
	} else {
		strcpy(out, r);
	}
	explicit_bzero(d, sizeof *d);
	free(d);
	return err;
}

// sg_gensalt writes a new setting for prefix (NULL: the preferred method)
// with a random salt and the method's default cost.
static int sg_gensalt(const char *prefix, char *out) {
	errno = 0;
	if (crypt_gensalt_rn(prefix, 0, NULL, 0, out, CRYPT_GENSALT_OUTPUT_SIZE) == NULL) {
		return errno != 0 ? errno : EINVAL;
	}
	return 0;
}

// sg_free_secret zeroes n bytes at p and frees it.
static void sg_free_secret(char *p, size_t n) {
	explicit_bzero(p, n);
	free(p);
}
*/
import "C"

import (
	"crypto/subtle"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

// fallbackDummy is used if crypt_gensalt_rn cannot make a setting at start
// (no entropy). It has libxcrypt 4.4's default yescrypt cost ("j9T").
const fallbackDummy = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1"

// dummySetting is what an unknown user's password is hashed against: a
// yescrypt setting with the library's default cost, the cost a hash set by
// passwd(1) on Debian 12 has.
var dummySetting = func() string {
	s, err := gensalt("$y$")
	if err != nil {
		return fallbackDummy
	}
	return s
}()

// slots bounds the crypt calls running at once: each holds an OS thread
// and, for yescrypt, 16 MiB of memory. Twice the CPUs, because yescrypt is
// memory-bound: a CPU waiting on memory for one hash can run another, and
// measured against Cyrus's 5 processes a cap of one per CPU lost throughput.
var slots = make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))

// Verify reports whether password matches hash, a crypt(3) string of any
// format libxcrypt supports. It is false for a hash libxcrypt refuses: a
// locked "!..." hash, "*", "x", an empty hash. Such a check still costs a
// hash computation (against the dummy hash), so its time does not tell a
// locked account from a wrong password.
//
// A password or hash holding a NUL byte never matches: C would silently
// check a shorter string.
func Verify(password, hash string) bool {
	if strings.IndexByte(password, 0) >= 0 || strings.IndexByte(hash, 0) >= 0 {
		VerifyDummy(password)
		return false
	}
	out, err := cryptHash(password, hash)
	if err != nil {
		VerifyDummy(password)
		return false
	}
	// the lengths are public (the hash format fixes them); the content is
	// compared in constant time
	return subtle.ConstantTimeCompare([]byte(out), []byte(hash)) == 1
}

// VerifyDummy hashes password against the dummy yescrypt hash and returns
// false. Call it where there is no hash to check (an unknown user) so that
// the answer takes as long as a real check.
func VerifyDummy(password string) bool {
	if i := strings.IndexByte(password, 0); i >= 0 {
		password = password[:i]
	}
	_, _ = cryptHash(password, dummySetting)
	return false
}

// Hash returns a new crypt(3) hash of password with a random salt and the
// method's default cost. prefix names the method ("$y$", "$6$", "$2b$",
// ...); an empty prefix means libxcrypt's preferred method (yescrypt).
func Hash(password, prefix string) (string, error) {
	if strings.IndexByte(password, 0) >= 0 {
		return "", fmt.Errorf("unixpw: password holds a NUL byte")
	}
	var setting string
	var err error
	if prefix == "" {
		setting, err = gensaltPreferred()
	} else {
		setting, err = gensalt(prefix)
	}
	if err != nil {
		return "", err
	}
	return cryptHash(password, setting)
}

// cryptHash runs crypt_rn(password, setting). The password goes to C in a
// copy that is zeroed and freed before this returns.
func cryptHash(password, setting string) (string, error) {
	slots <- struct{}{}
	defer func() { <-slots }()
	cpw := C.CString(password)
	defer C.sg_free_secret(cpw, C.size_t(len(password)+1))
	cset := C.CString(setting)
	defer C.free(unsafe.Pointer(cset))
	var out [C.CRYPT_OUTPUT_SIZE]C.char
	if rc := C.sg_crypt(cpw, cset, &out[0]); rc != 0 {
		return "", fmt.Errorf("unixpw: crypt_rn refused the setting: %w", syscall.Errno(rc))
	}
	return C.GoString(&out[0]), nil
}

// gensalt is crypt_gensalt_rn(prefix) with the method's default cost. The
// prefix is passed as is: "" selects traditional DES, which only tests want.
func gensalt(prefix string) (string, error) {
	cp := C.CString(prefix)
	defer C.free(unsafe.Pointer(cp))
	return gensaltC(cp)
}

func gensaltPreferred() (string, error) { return gensaltC(nil) }

func gensaltC(prefix *C.char) (string, error) {
	var out [C.CRYPT_GENSALT_OUTPUT_SIZE]C.char
	if rc := C.sg_gensalt(prefix, &out[0]); rc != 0 {
		p := "(preferred)"
		if prefix != nil {
			p = C.GoString(prefix)
		}
		return "", fmt.Errorf("unixpw: crypt_gensalt_rn(%q): %w", p, syscall.Errno(rc))
	}
	return C.GoString(&out[0]), nil
}
