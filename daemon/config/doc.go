// Package config reads saslgate's config file (/etc/saslgate.conf by
// default) into a typed Config, and holds the table of keys (Keys) that its
// documentation, a sample file (WriteSample) and "--check" output (Format)
// are generated from.
//
// # Format
//
// The syntax is the "key: value" format admins know from saslauthd.conf
// (saslauthd's cfile, spec §3.6):
//
//   - Lines may be up to MaxLine (4095) bytes long, not counting the line
//     break ("\n" or "\r\n"). A UTF-8 byte order mark at the start of the
//     file is skipped.
//   - Leading spaces and tabs are skipped. Blank lines and lines whose
//     first other character is "#" are comments. There are no comments at
//     the end of a line: the value is the rest of the line.
//   - A key is [A-Za-z0-9_-]+, case-insensitive, followed IMMEDIATELY by
//     ":" ("mech : pam" is an error).
//   - Spaces and tabs after the colon are skipped; the value is the rest of
//     the line. Unlike saslauthd, trailing spaces and tabs are trimmed too.
//     An empty value is an error. Quotes are not special.
//   - Control characters other than tab are errors anywhere in a line.
//
// Where saslauthd ignores a problem, saslgate refuses the file, with an
// error naming the file and line ("config: /etc/saslgate.conf:12: unknown
// key "realm_strp" (did you mean "realm_strip"?)"): unknown keys, values
// of the wrong type, and a key set twice, except the keys marked
// Repeatable, whose entries add up line after line.
//
// # Types
//
//   - bool: saslauthd's switch rules, case-insensitive: "0" and words
//     starting n, of or f are false ("no", "off", "false"); "1" and words
//     starting y, on or t are true ("yes", "on", "true").
//   - int: decimal, within the key's range.
//   - duration: Go's syntax (30s, 1m30s, 8h, 500ms) or whole seconds
//     (28800, as saslauthd's -t); always positive.
//   - path: absolute.
//   - enum: one of the listed words, case-insensitive.
//   - chain: mechanism names separated by commas or spaces ("sasldb,pam",
//     "sasldb pam"), lower-cased, each once. Whether a mechanism exists is
//     checked by CheckMechs, since the registry knows which are built in.
//   - realms: "all", or realms separated by commas or spaces.
//   - services: service=value entries. service_map entries are separated
//     by commas, semicolons or spaces ("smtp=mail, imap=dovecot"); service_mech
//     entries by semicolons, since a chain holds commas ("imap=rimap;
//     smtp=sasldb,pam"). Service names are letters, digits, ".", "_" and
//     "-"; service_map also takes "*" for every other service.
//
// # Flags and the file
//
// Every behaviour has a key; most also have a command-line flag
// (Key.Flag), and the flag wins. Load or Parse the file, then overwrite
// the fields whose flags were given, then call Rules; IsSet tells which
// keys the file set, and Errorf reports a value the caller finds wrong
// with the file's line.
//
// # Adding a key
//
// Add a field to Config and one row to the keys table in keys.go, with a
// value type (boolValue, intValue, durationValue, stringValue, pathValue,
// enumValue, chainValue, or a new one implementing value). The parser,
// the defaults, String, Format, WriteSample and Diff follow from the row.
package config
