package commands

import (
	"strings"

	"github.com/spf13/pflag"
)

// stop is what ends saslauthd's option parsing early. saslauthd acts on
// options in the order given (getopt): the first -v prints the version,
// the first -h, second -a, unknown option or missing argument prints usage,
// and whatever follows is never looked at. pflag parses everything first,
// so the command scans the arguments getopt-style before handing them to
// cobra.
type stop struct {
	kind byte // 'v', 'h', '2' (second -a), '?' (unknown), ':' (missing argument); 0: none
	opt  string
}

// getoptScan walks args as glibc's getopt does for saslauthd's option
// string (short options, permuting non-options, "--" ends options). Long
// options are saslgate's own: known ones are skipped with their value,
// unknown ones stop the scan as getopt would.
func getoptScan(args []string, fs *pflag.FlagSet) stop {
	seenA := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return stop{}
		case strings.HasPrefix(a, "--"):
			name, _, hasVal := strings.Cut(a[2:], "=")
			f := fs.Lookup(name)
			if f == nil {
				return stop{kind: '?', opt: a}
			}
			if name == "help" {
				return stop{kind: 'h'}
			}
			if name == "version" {
				return stop{kind: 'v'}
			}
			if !hasVal && f.NoOptDefVal == "" {
				i++
			}
			continue
		case len(a) < 2 || a[0] != '-':
			continue // an operand: getopt permutes it out of the way
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			f := fs.ShorthandLookup(string(c))
			if f == nil {
				return stop{kind: '?', opt: string(c)}
			}
			switch c {
			case 'v':
				return stop{kind: 'v'}
			case 'h':
				return stop{kind: 'h'}
			}
			if f.NoOptDefVal != "" { // a switch
				continue
			}
			if c == 'a' {
				if seenA {
					return stop{kind: '2'}
				}
				seenA = true
			}
			if j+1 == len(a) { // the value is the next argument
				if i+1 == len(args) {
					return stop{kind: ':', opt: string(c)}
				}
				i++
			}
			break
		}
	}
	return stop{}
}
