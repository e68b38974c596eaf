//go:build !linux || !cgo

package unixpw

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Supported is false: this build has no cgo or is not for Linux, so there
// is no getspnam_r and no libxcrypt to call. The package still compiles so
// that the mechanisms can say so at start instead of breaking the build.
const Supported = false

var errUnsupported = fmt.Errorf("unixpw: needs cgo on Linux: %w", errors.ErrUnsupported)

// Strerror is Go's text for errno with a capital first letter.
func Strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

func LookupUser(string) (*Passwd, error)                           { return nil, errUnsupported }
func LookupShadow(string) (*Shadow, error)                         { return nil, errUnsupported }
func LookupUserContext(context.Context, string) (*Passwd, error)   { return nil, errUnsupported }
func LookupShadowContext(context.Context, string) (*Shadow, error) { return nil, errUnsupported }
func Verify(string, string) bool                                   { return false }
func VerifyDummy(string) bool                                      { return false }
func Hash(string, string) (string, error)                          { return "", errUnsupported }
