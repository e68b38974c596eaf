package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes the report as one JSON document:
// {"ok":bool,"findings":[{"id","severity","summary","detail","fix"}]}.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	return nil
}

// WriteText writes the report for a person: problems first, then what was
// not checked.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	problems := 0
	for _, f := range r.Findings {
		if f.Severity != Info {
			problems++
		}
	}
	for _, sev := range []Severity{Error, Warning, Info} {
		for _, f := range r.Findings {
			if f.Severity != sev {
				continue
			}
			fmt.Fprintf(&b, "%s %s: %s\n", f.Severity, f.ID, f.Summary)
			if f.Detail != "" {
				label := "saw"
				if f.Severity == Info {
					label = "note"
				}
				fmt.Fprintf(&b, "  %s: %s\n", label, f.Detail)
			}
			if f.Fix != "" {
				b.WriteString("  fix:\n")
				for _, l := range strings.Split(f.Fix, "\n") {
					fmt.Fprintf(&b, "    %s\n", l)
				}
			}
			b.WriteString("\n")
		}
	}
	switch problems {
	case 0:
		b.WriteString("no problems found\n")
	case 1:
		b.WriteString("1 problem found\n")
	default:
		fmt.Fprintf(&b, "%d problems found\n", problems)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
