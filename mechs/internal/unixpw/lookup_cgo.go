//go:build linux && cgo

package unixpw

/*
#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// sg_strerror writes the C library's text for e into buf (n bytes, n > 0).
// cgo does not define _GNU_SOURCE, so strerror_r is the XSI one, but both
// variants are handled in case a build defines it.
static void sg_strerror(int e, char *buf, size_t n) {
#if defined(_GNU_SOURCE)
	char *p = strerror_r(e, buf, n);
	if (p != buf) {
		snprintf(buf, n, "%s", p);
	}
#else
	if (strerror_r(e, buf, n) != 0) {
		snprintf(buf, n, "Unknown error %d", e);
	}
#endif
}
*/
import "C"

import (
	"context"
	"strings"
	"syscall"
	"unsafe"
)

// Supported is true where the lookups and crypt work (Linux with cgo).
const Supported = true

const (
	// firstBuf is glibc's _SC_GETPW_R_SIZE_MAX, enough for every ordinary
	// entry; maxBuf bounds the growth on ERANGE so that a misbehaving NSS
	// module cannot make us allocate without end.
	firstBuf = 1024
	maxBuf   = 1 << 20
)

// lookupSlots bounds the lookups running at once. Each holds an OS thread
// for as long as the name service takes, and a hung source (sssd, an LDAP
// server that accepts but never answers) would otherwise make the runtime
// start a thread per request until it reaches its 10000-thread limit and
// kills the process. Waiting for a slot costs a goroutine, not a thread.
var lookupSlots = make(chan struct{}, 64)

// Strerror is the C library's message for errno ("Permission denied"), the
// text saslauthd puts in its replies. The process never calls setlocale, so
// it is the C locale's English text, as in saslauthd.
func Strerror(errno syscall.Errno) string {
	var buf [256]C.char
	C.sg_strerror(C.int(errno), &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}

// LookupUser returns name's passwd entry through getpwnam_r. It returns
// (nil, nil) when no source knows the user, and a *LookupError when a
// source failed.
func LookupUser(name string) (*Passwd, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, nil // C would see a shorter name; no real user has a NUL
	}
	lookupSlots <- struct{}{}
	defer func() { <-lookupSlots }()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var pw C.struct_passwd
	var out *Passwd
	err := withBuffer("getpwnam", name, func(buf *C.char, n C.size_t) C.int {
		var res *C.struct_passwd
		rc := C.getpwnam_r(cname, &pw, buf, n, &res)
		if rc == 0 && res != nil {
			// copy out while buf is alive: the strings point into it
			out = &Passwd{
				Name:   C.GoString(pw.pw_name),
				Passwd: C.GoString(pw.pw_passwd),
				UID:    uint32(pw.pw_uid),
				GID:    uint32(pw.pw_gid),
				Gecos:  C.GoString(pw.pw_gecos),
				Dir:    C.GoString(pw.pw_dir),
				Shell:  C.GoString(pw.pw_shell),
			}
		}
		return rc
	})
	return out, err
}

// LookupShadow returns name's shadow entry through getspnam_r. It returns
// (nil, nil) when no source has an entry, and a *LookupError when a source
// failed.
//
// An unprivileged process usually gets (nil, nil) rather than EACCES: the
// files source fails, glibc goes on to the next source (systemd on Debian),
// and that one's "not found" is the answer.
func LookupShadow(name string) (*Shadow, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, nil
	}
	lookupSlots <- struct{}{}
	defer func() { <-lookupSlots }()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var sp C.struct_spwd
	var out *Shadow
	err := withBuffer("getspnam", name, func(buf *C.char, n C.size_t) C.int {
		var res *C.struct_spwd
		rc := C.getspnam_r(cname, &sp, buf, n, &res)
		if rc == 0 && res != nil {
			out = &Shadow{
				Name:       C.GoString(sp.sp_namp),
				Password:   C.GoString(sp.sp_pwdp),
				LastChange: int64(sp.sp_lstchg),
				Min:        int64(sp.sp_min),
				Max:        int64(sp.sp_max),
				Warn:       int64(sp.sp_warn),
				Inactive:   int64(sp.sp_inact),
				Expire:     int64(sp.sp_expire),
			}
		}
		return rc
	})
	return out, err
}

// LookupUserContext is LookupUser that gives up waiting when ctx ends,
// returning ctx.Err(). The C call cannot be interrupted: it goes on in the
// background and its answer is dropped.
func LookupUserContext(ctx context.Context, name string) (*Passwd, error) {
	return await(ctx, func() (*Passwd, error) { return LookupUser(name) })
}

// LookupShadowContext is LookupShadow that gives up waiting when ctx ends,
// returning ctx.Err().
func LookupShadowContext(ctx context.Context, name string) (*Shadow, error) {
	return await(ctx, func() (*Shadow, error) { return LookupShadow(name) })
}

// await runs f in a goroutine and returns its result, or ctx.Err() if ctx
// ends first.
func await[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1) // buffered: an abandoned f must not block
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// withBuffer calls lookup with a C buffer for the entry's strings, doubling
// it while lookup answers ERANGE. The buffer is C memory because the entry
// the C library fills points into it; it is zeroed before it is freed, as it
// may hold a password hash.
func withBuffer(op, name string, lookup func(buf *C.char, n C.size_t) C.int) error {
	for n := firstBuf; ; n *= 2 {
		buf := C.calloc(1, C.size_t(n))
		if buf == nil {
			return &LookupError{Op: op, Name: name, Errno: syscall.ENOMEM}
		}
		rc := lookup((*C.char)(buf), C.size_t(n))
		C.explicit_bzero(buf, C.size_t(n))
		C.free(buf)
		switch {
		case rc == 0:
			return nil
		case syscall.Errno(rc) == syscall.ERANGE && n < maxBuf:
			continue
		}
		return &LookupError{Op: op, Name: name, Errno: syscall.Errno(rc)}
	}
}
