package config

import (
	"bufio"
	"io"
	"strings"
)

// String returns the keys the file set, with their current values, as a
// config file: one "key: value" line each, in table order, a repeatable
// key one line per entry. Parsing it gives back an equal Config.
func (c *Config) String() string {
	var b strings.Builder
	_ = c.Format(&b, false)
	return b.String()
}

// Format writes the Config as a config file. With all unset, it writes
// what String returns. With all set (for --check), it writes every key
// with its current value; a key the file did not set is written commented
// out ("#procs: 5", or "#default_realm:" when it has no value), so the
// output still parses back to the same Config.
func (c *Config) Format(w io.Writer, all bool) error {
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		set := c.set[k.Name] > 0
		if !set && !all {
			continue
		}
		prefix := ""
		if !set {
			prefix = "#"
		}
		vals := k.v.format(c)
		if len(vals) == 0 {
			if all {
				bw.WriteString("#" + k.Name + ":\n")
			}
			continue
		}
		for _, v := range vals {
			bw.WriteString(prefix + k.Name + ": " + v + "\n")
		}
	}
	return bw.Flush()
}

// WriteSample writes a config file with every key commented out at its
// default, each after its documentation: the file packages install as
// /etc/saslgate.conf.
func WriteSample(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("# saslgate configuration. Format: \"key: value\", one per line; lines\n" +
		"# starting with # are comments. Command-line flags win over this file.\n")
	for _, k := range keys {
		bw.WriteString("\n")
		for _, l := range wrap(k.Doc, 76) {
			bw.WriteString("# " + l + "\n")
		}
		meta := "Value: " + k.Syntax + "."
		if k.Flag != "" {
			meta += " Flag: " + k.Flag + "."
		}
		if k.Restart {
			meta += " Needs a restart."
		}
		for _, l := range wrap(meta, 76) {
			bw.WriteString("# " + l + "\n")
		}
		bw.WriteString("#" + k.Name + ":")
		if k.Default != "" {
			bw.WriteString(" " + k.Default)
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
