package rimap

import (
	"bytes"
	"strconv"
	"testing"
)

// parseLogin reads a LOGIN command back the way a server does: quoted
// strings with \" and \\, or literals.
func parseLogin(cmd []byte) (login, password string, ok bool) {
	rest, found := bytes.CutPrefix(cmd, []byte("saslauthd LOGIN "))
	if !found {
		return "", "", false
	}
	var vals [2]string
	for i := range vals {
		if i == 1 {
			if len(rest) == 0 || rest[0] != ' ' {
				return "", "", false
			}
			rest = rest[1:]
		}
		switch {
		case len(rest) > 0 && rest[0] == '"':
			var v []byte
			j := 1
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\r' || rest[j] == '\n' {
					return "", "", false // CR/LF in a quoted string
				}
				if rest[j] == '\\' {
					j++
					if j == len(rest) || rest[j] != '"' && rest[j] != '\\' {
						return "", "", false
					}
				}
				v = append(v, rest[j])
			}
			if j == len(rest) {
				return "", "", false
			}
			vals[i], rest = string(v), rest[j+1:]
		case len(rest) > 0 && rest[0] == '{':
			end := bytes.Index(rest, []byte("}\r\n"))
			if end < 0 {
				return "", "", false
			}
			n, err := strconv.Atoi(string(bytes.TrimSuffix(rest[1:end], []byte("+"))))
			rest = rest[end+3:]
			if err != nil || n > len(rest) {
				return "", "", false
			}
			vals[i], rest = string(rest[:n]), rest[n:]
		default:
			return "", "", false
		}
	}
	return vals[0], vals[1], string(rest) == "\r\n"
}

// FuzzLoginCommand: whatever the credentials, the command carries them
// intact, CR and LF never end it early, and printable ASCII is sent exactly
// as saslauthd sends it.
func FuzzLoginCommand(f *testing.F) {
	for _, s := range [][2]string{{"u", "p"}, {`al"i\ce`, `p\"w`}, {"u", "pä✓"}, {"u", "a\r\nb"}, {"ü", "\n"}, {"", ""}} {
		f.Add(s[0], s[1], false, false)
	}
	f.Fuzz(func(t *testing.T, login, password string, plus, minus bool) {
		segs := loginCommand(login, password, caps{literalPlus: plus, literalMinus: minus})
		cmd := bytes.Join(segs, nil)
		l, p, ok := parseLogin(cmd)
		if !ok || l != login || p != password {
			t.Fatalf("%q does not parse back to %q %q (got %q %q %v)", cmd, login, password, l, p, ok)
		}
		for i, s := range segs {
			if !bytes.HasSuffix(s, []byte("\r\n")) || i < len(segs)-1 && !bytes.HasSuffix(s, []byte("}\r\n")) {
				t.Fatalf("segment %d %q", i, s)
			}
		}
		if !needsLiteral(login) && !needsLiteral(password) {
			want := append(append(append(append([]byte("saslauthd LOGIN "), quote(nil, login)...), ' '), quote(nil, password)...), "\r\n"...)
			if len(segs) != 1 || !bytes.Equal(cmd, want) {
				t.Fatalf("%q, want saslauthd's %q", cmd, want)
			}
		}
	})
}

// FuzzClassify: the reply classifier never panics and reads a tagged line
// only at the start of a line.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"saslauthd OK x\r\n", "* CAPABILITY a\r\n\r\nsaslauthd NO\r\n", "\r\n", "* OK [ALERT]\r\nsaslauthd OK\r\n", "x saslauthd OK\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, line := classify(b)
		switch st {
		case accepted:
			if len(line) < len(replyGood) || line[:len(replyGood)] != replyGood {
				t.Fatalf("accepted %q", line)
			}
		case rejected:
			if len(line) < len(replyBad) || line[:len(replyBad)] != replyBad {
				t.Fatalf("rejected %q", line)
			}
		}
	})
}
