// Package duration is the configuration's duration: a time.Duration
// written "10s", "1m30s" or in whole days ("30d") in YAML. The main
// configuration and the target kinds' own settings share it.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "10s", "1m30s" or "30d" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := Parse(s)
	if err != nil {
		// A *yaml.TypeError lets the decoder go on and report other problems too.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q (want e.g. 10s, 1m30s, 30d)", n.Line, s)}}
	}
	*d = Duration(v)
	return nil
}

// Parse is time.ParseDuration that also takes whole days ("30d"), the
// unit review periods are thought in.
func Parse(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
