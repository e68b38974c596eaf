package protocol

// The qmail checkpassword interface (docs/peers-and-deps.md B.4,
// cr.yp.to/checkpwd/interface.html): the caller writes
// "login\0password\0timestamp\0" on the program's fd 3, at most 512 bytes,
// then closes it. The program exits 0 (after running the next program), 1
// (unacceptable), 2 (misuse) or 111 (temporary problem).
//
// The split follows djb's checkpassword 0.90 byte for byte: the login and
// the password must each end with a NUL, the timestamp and anything after
// it are optional and never checked. Dovecot writes an empty timestamp;
// qmail-popup writes its APOP banner there.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// CheckpasswordMax is the most bytes a checkpassword caller may write: djb's
// checkpassword reads into 513 bytes and gives up when they fill.
const CheckpasswordMax = 512

// Checkpassword errors. Both are misuse of the interface (exit 2).
var (
	ErrCheckpasswordTooLong   = errors.New("protocol: checkpassword input longer than 512 bytes")
	ErrCheckpasswordMalformed = errors.New("protocol: checkpassword input is not login\\0password\\0")
)

// Checkpassword is the fd 3 input of a checkpassword program.
type Checkpassword struct {
	Login    string
	Password string `json:"-"`
	// Timestamp is the third field, without its NUL (it may have none);
	// bytes after its NUL are ignored, as every checkpassword does.
	Timestamp string
}

// GoString, String, Format and LogValue keep the password out of print.
func (c Checkpassword) GoString() string {
	return fmt.Sprintf("protocol.Checkpassword{Login:%q, Password:REDACTED, Timestamp:%q}", c.Login, c.Timestamp)
}

func (c Checkpassword) String() string { return c.GoString() }

// Format prints the redacted form for every verb.
func (c Checkpassword) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), c.GoString())
}

// LogValue keeps the password out of structured logs.
func (c Checkpassword) LogValue() slog.Value { return slog.StringValue(c.GoString()) }

// ParseCheckpassword splits fd 3's bytes. The login and the password may
// hold any byte but NUL (spaces, UTF-8, '@', newlines); either may be
// empty, which the interface allows and a back end rejects.
func ParseCheckpassword(b []byte) (Checkpassword, error) {
	if len(b) > CheckpasswordMax {
		return Checkpassword{}, ErrCheckpasswordTooLong
	}
	login, rest, ok := bytes.Cut(b, []byte{0})
	// "alice\0" has no password field at all: misuse, as in djb's, where
	// "alice\0\0" is an empty password
	if !ok || len(rest) == 0 {
		return Checkpassword{}, ErrCheckpasswordMalformed
	}
	password, rest, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return Checkpassword{}, ErrCheckpasswordMalformed
	}
	timestamp, _, _ := bytes.Cut(rest, []byte{0})
	return Checkpassword{Login: string(login), Password: string(password), Timestamp: string(timestamp)}, nil
}

// ReadCheckpassword reads r to EOF, but never more than CheckpasswordMax+1
// bytes: a longer input is ErrCheckpasswordTooLong without waiting for its
// end. A read error (a deadline, say) is returned wrapped, as a temporary
// problem rather than misuse. The caller bounds the wait: set a deadline on
// r when it has one.
func ReadCheckpassword(r io.Reader) (Checkpassword, error) {
	var buf [CheckpasswordMax + 1]byte
	defer clear(buf[:]) // the password passed through here
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Checkpassword{}, fmt.Errorf("protocol: reading checkpassword input: %w", err)
		}
	}
	return ParseCheckpassword(buf[:n])
}

// AppendCheckpassword appends what a caller writes on fd 3. It refuses a
// login or password holding a NUL (the program would split it elsewhere)
// and an input over CheckpasswordMax bytes.
func AppendCheckpassword(dst []byte, c Checkpassword) ([]byte, error) {
	switch {
	case strings.IndexByte(c.Login, 0) >= 0:
		return dst, errors.New("protocol: NUL in checkpassword login")
	case strings.IndexByte(c.Password, 0) >= 0:
		return dst, errors.New("protocol: NUL in checkpassword password")
	case strings.IndexByte(c.Timestamp, 0) >= 0:
		return dst, errors.New("protocol: NUL in checkpassword timestamp")
	case len(c.Login)+len(c.Password)+len(c.Timestamp)+3 > CheckpasswordMax:
		return dst, ErrCheckpasswordTooLong
	}
	dst = append(dst, c.Login...)
	dst = append(dst, 0)
	dst = append(dst, c.Password...)
	dst = append(dst, 0)
	dst = append(dst, c.Timestamp...)
	return append(dst, 0), nil
}
