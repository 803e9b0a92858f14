package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints plans the way an admin reads a diff: one header per
// target, then "+ add", "~ modify", "- delete" lines.
func WriteText(w io.Writer, plans []*Plan) error {
	var b strings.Builder
	for _, p := range plans {
		add, mod, del := p.Counts()
		fmt.Fprintf(&b, "target %s: %d to add, %d to modify, %d to delete (holds %d)\n", p.Target, add, mod, del, p.Current)
		if p.Refused != "" {
			fmt.Fprintf(&b, "  REFUSED: %s\n  approve this plan (and no other) with: collabsync approve %s %s\n", p.Refused, p.Target, p.Digest)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n)
		}
		for _, c := range p.Changes {
			switch c.Op {
			case OpAdd:
				fmt.Fprintf(&b, "  + %s %s: %s\n", c.Kind, c.Key, c.New)
			case OpModify:
				fmt.Fprintf(&b, "  ~ %s %s: %s\n      → %s\n", c.Kind, c.Key, c.Old, c.New)
			case OpDelete:
				fmt.Fprintf(&b, "  - %s %s: %s\n", c.Kind, c.Key, c.Old)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints plans as one JSON document.
func WriteJSON(w io.Writer, plans []*Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(plans)
}
