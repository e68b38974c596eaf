package protocol_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// djbSplit is checkpassword 0.90's parsing loop transcribed index by index,
// an oracle independent of ParseCheckpassword's bytes.Cut: 0 parsed, 1 too
// long (djb exits 1 there; saslgate calls it misuse), 2 misuse.
func djbSplit(up []byte) (code int, login, password []byte) {
	uplen := len(up)
	if uplen >= 513 {
		return 1, nil, nil
	}
	i := 0
	if i >= uplen {
		return 2, nil, nil
	}
	start := i
	for {
		c := up[i]
		i++
		if c == 0 {
			break
		}
		if i >= uplen {
			return 2, nil, nil
		}
	}
	login = up[start : i-1]
	if i >= uplen {
		return 2, nil, nil
	}
	start = i
	for {
		c := up[i]
		i++
		if c == 0 {
			break
		}
		if i >= uplen {
			return 2, nil, nil
		}
	}
	return 0, login, up[start : i-1]
}

func TestParseCheckpassword(t *testing.T) {
	long := strings.Repeat("p", protocol.CheckpasswordMax-len("u\x00\x00\x00"))
	for i, tc := range []struct {
		name  string
		in    string
		want  protocol.Checkpassword
		err   error
		djbOK bool // djb's checkpassword parses it too
	}{
		{"dovecot's form, empty timestamp", "alice\x00secret\x00\x00",
			protocol.Checkpassword{Login: "alice", Password: "secret"}, nil, true},
		{"qmail-popup's APOP timestamp", "alice\x00secret\x00<123.456@mx.example>\x00",
			protocol.Checkpassword{Login: "alice", Password: "secret", Timestamp: "<123.456@mx.example>"}, nil, true},
		{"no timestamp at all", "alice\x00secret\x00",
			protocol.Checkpassword{Login: "alice", Password: "secret"}, nil, true},
		{"timestamp without its NUL", "alice\x00secret\x00ts",
			protocol.Checkpassword{Login: "alice", Password: "secret", Timestamp: "ts"}, nil, true},
		{"bytes after the timestamp are ignored", "alice\x00secret\x00ts\x00more\x00fields",
			protocol.Checkpassword{Login: "alice", Password: "secret", Timestamp: "ts"}, nil, true},
		{"spaces, tabs, newlines and UTF-8 stay whole", "jörg müller@ex.org\x00 pa ss\twörd\r\n✓ \x00\x00",
			protocol.Checkpassword{Login: "jörg müller@ex.org", Password: " pa ss\twörd\r\n✓ "}, nil, true},
		{"8-bit bytes that are not UTF-8", "\xff\xfe\x00\x80\x81\x00\x00",
			protocol.Checkpassword{Login: "\xff\xfe", Password: "\x80\x81"}, nil, true},
		{"empty password is well formed", "alice\x00\x00",
			protocol.Checkpassword{Login: "alice"}, nil, true},
		{"empty login is well formed", "\x00secret\x00",
			protocol.Checkpassword{Password: "secret"}, nil, true},
		{"exactly 512 bytes", "u\x00" + long + "\x00\x00",
			protocol.Checkpassword{Login: "u", Password: long}, nil, true},
		{"513 bytes", "u\x00" + long + "x\x00\x00", protocol.Checkpassword{}, protocol.ErrCheckpasswordTooLong, false},
		{"empty input", "", protocol.Checkpassword{}, protocol.ErrCheckpasswordMalformed, false},
		{"login without NUL", "alice", protocol.Checkpassword{}, protocol.ErrCheckpasswordMalformed, false},
		{"login's NUL is the last byte", "alice\x00", protocol.Checkpassword{}, protocol.ErrCheckpasswordMalformed, false},
		{"password without NUL", "alice\x00secret", protocol.Checkpassword{}, protocol.ErrCheckpasswordMalformed, false},
		{"a lone NUL", "\x00", protocol.Checkpassword{}, protocol.ErrCheckpasswordMalformed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.ParseCheckpassword([]byte(tc.in))
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("case %d: err = %v, want %v", i, err, tc.err)
			}
			if got != tc.want {
				t.Errorf("case %d: got %#v (password %q), want %#v (password %q)", i, got, got.Password, tc.want, tc.want.Password)
			}
			code, l, p := djbSplit([]byte(tc.in))
			if (code == 0) != tc.djbOK {
				t.Errorf("case %d: djb's loop exits %d", i, code)
			}
			if code == 0 && (string(l) != got.Login || string(p) != got.Password) {
				t.Errorf("case %d: djb's loop splits %q/%q", i, l, p)
			}
		})
	}
}

func TestReadCheckpassword(t *testing.T) {
	in := "alice\x00pa ss wörd\x00\x00"
	want := protocol.Checkpassword{Login: "alice", Password: "pa ss wörd"}
	t.Run("one byte at a time", func(t *testing.T) {
		got, err := protocol.ReadCheckpassword(iotest.OneByteReader(strings.NewReader(in)))
		if err != nil || got != want {
			t.Fatalf("got %#v, %v", got, err)
		}
	})
	t.Run("data with EOF", func(t *testing.T) {
		got, err := protocol.ReadCheckpassword(iotest.DataErrReader(strings.NewReader(in)))
		if err != nil || got != want {
			t.Fatalf("got %#v, %v", got, err)
		}
	})
	t.Run("endless input stops after 513 bytes", func(t *testing.T) {
		cr := &countReader{}
		_, err := protocol.ReadCheckpassword(cr)
		if !errors.Is(err, protocol.ErrCheckpasswordTooLong) {
			t.Fatalf("err = %v", err)
		}
		if cr.n != protocol.CheckpasswordMax+1 {
			t.Errorf("read %d bytes, want %d", cr.n, protocol.CheckpasswordMax+1)
		}
	})
	t.Run("read error is not misuse", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := protocol.ReadCheckpassword(io.MultiReader(strings.NewReader("alice\x00"), iotest.ErrReader(boom)))
		if !errors.Is(err, boom) || errors.Is(err, protocol.ErrCheckpasswordMalformed) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a pipe's deadline ends the wait", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		if _, err := w.Write([]byte("alice\x00")); err != nil { // half an input, and no EOF
			t.Fatal(err)
		}
		if err := r.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := protocol.ReadCheckpassword(r); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want the deadline", err)
			}
		case <-time.After(guard):
			t.Fatal("ReadCheckpassword ignored the deadline")
		}
	})
}

// countReader is an endless stream of 'x' that counts what was taken.
type countReader struct{ n int }

func (c *countReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

func TestAppendCheckpassword(t *testing.T) {
	for i, tc := range []struct {
		in   protocol.Checkpassword
		want string
		ok   bool
	}{
		{protocol.Checkpassword{Login: "alice", Password: "s e c r e t"}, "alice\x00s e c r e t\x00\x00", true},
		{protocol.Checkpassword{Login: "a", Password: "b", Timestamp: "<1.2@h>"}, "a\x00b\x00<1.2@h>\x00", true},
		{protocol.Checkpassword{Login: "al\x00ice", Password: "x"}, "", false},
		{protocol.Checkpassword{Login: "alice", Password: "x\x00y"}, "", false},
		{protocol.Checkpassword{Login: "alice", Password: "x", Timestamp: "t\x00"}, "", false},
		{protocol.Checkpassword{Login: "u", Password: strings.Repeat("p", 508)}, "u\x00" + strings.Repeat("p", 508) + "\x00\x00", true},
		{protocol.Checkpassword{Login: "u", Password: strings.Repeat("p", 509)}, "", false},
	} {
		got, err := protocol.AppendCheckpassword([]byte("prefix"), tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("case %d: err = %v", i, err)
			continue
		}
		if !tc.ok {
			if string(got) != "prefix" {
				t.Errorf("case %d: wrote %q on error", i, got)
			}
			continue
		}
		if string(got) != "prefix"+tc.want {
			t.Errorf("case %d: got %q, want %q", i, got, "prefix"+tc.want)
		}
		back, err := protocol.ParseCheckpassword(got[len("prefix"):])
		if err != nil || back != tc.in {
			t.Errorf("case %d: round trip gave %#v, %v", i, back, err)
		}
	}
}

func TestCheckpasswordRedacted(t *testing.T) {
	c := protocol.Checkpassword{Login: "alice", Password: "hunter2-secret"}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "input", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c), c.String(), logBuf.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("password printed: %s", s)
		}
		if !strings.Contains(s, "alice") {
			t.Errorf("login missing: %s", s)
		}
	}
}

func FuzzParseCheckpassword(f *testing.F) {
	for _, s := range []string{
		"alice\x00secret\x00\x00", "alice\x00secret\x00<1.2@h>\x00", "alice\x00secret\x00", "alice\x00secret",
		"alice\x00", "alice", "", "\x00", "\x00\x00", "a\x00b\x00c\x00d\x00", "jörg\x00 p w \x00\x00",
		"u\x00" + strings.Repeat("p", 508) + "\x00\x00", "u\x00" + strings.Repeat("p", 509) + "\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := protocol.ParseCheckpassword(in)
		code, login, password := djbSplit(in)
		switch {
		case len(in) > protocol.CheckpasswordMax:
			if !errors.Is(err, protocol.ErrCheckpasswordTooLong) || code != 1 {
				t.Fatalf("%d bytes: err %v, djb %d", len(in), err, code)
			}
			return
		case code == 2:
			if !errors.Is(err, protocol.ErrCheckpasswordMalformed) {
				t.Fatalf("djb says misuse, got %#v, %v", got, err)
			}
			return
		case err != nil:
			t.Fatalf("djb parses %q/%q, got %v", login, password, err)
		}
		if got.Login != string(login) || got.Password != string(password) {
			t.Fatalf("got %q/%q, djb %q/%q", got.Login, got.Password, login, password)
		}
		if strings.ContainsRune(got.Login+got.Password+got.Timestamp, 0) {
			t.Fatal("NUL in a field")
		}
		// what a caller would write for it parses back the same
		b, err := protocol.AppendCheckpassword(nil, got)
		if err != nil {
			if !errors.Is(err, protocol.ErrCheckpasswordTooLong) || len(in) >= len(got.Login)+len(got.Password)+len(got.Timestamp)+3 {
				t.Fatalf("append: %v", err)
			}
			return
		}
		if back, err := protocol.ParseCheckpassword(b); err != nil || back != got {
			t.Fatalf("round trip %#v: %#v, %v", got, back, err)
		}
		if !bytes.HasPrefix(in, b[:len(got.Login)+len(got.Password)+2]) {
			t.Fatalf("login and password are not the input's first fields")
		}
	})
}
