package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
)

// Target is one configured target instance: a name, a kind, a guard, and
// the kind's own settings.
//
//	targets:
//	  - name: extrausers
//	    kind: nss
//	    dir: /var/lib/extrausers
//	    guard: {max_delete_ratio: 0.2}
//
// The older form, a mapping of kind to settings (targets: {nss: {dir: ...}}),
// still reads: each entry is an instance named after its kind.
type Target struct {
	Name string
	// Kind is the instance's kind, resolved once from the registry the
	// program handed in: it builds the instance from Settings.
	Kind  engine.Kind
	Guard Guard
	// Maintenance holds the target's changes during its windows.
	Maintenance maintenance.Config
	Settings    engine.Settings // the kind's, defaults filled in
	// Path is where the instance is in the file ("targets[0]", or
	// "targets.nss" in the older form), for messages.
	Path string
}

// instanceName is what a target may be called: it appears in metrics,
// logs and the approve command.
var instanceName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// cutKey removes key from the document's top mapping and returns its value.
func cutKey(root *yaml.Node, key string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			k, v := n.Content[i], n.Content[i+1]
			n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
			return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{k, v}}
		}
	}
	return nil
}

// targets reads the targets section (the mapping {targets: value} cutKey
// returned) against the registered kinds.
func (d *document) targets(section *yaml.Node, kinds engine.Registry) ([]Target, []Problem) {
	key, n := section.Content[0], section.Content[1]
	d.at["targets"] = key.Line
	if n.Tag == "!!null" {
		return nil, nil
	}
	d.present["targets"] = true
	var out []Target
	var ps []Problem
	switch n.Kind {
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := fmt.Sprintf("targets[%d]", i)
			d.at[path] = item.Line
			t, p := d.target(item, path, "", kinds)
			out, ps = append(out, t), append(ps, p...)
		}
	case yaml.MappingNode: // the older form: kind → settings
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := "targets." + k.Value
			d.at[path] = k.Line
			t, p := d.target(v, path, k.Value, kinds)
			out, ps = append(out, t), append(ps, p...)
		}
	default:
		ps = append(ps, Problem{Line: n.Line, Path: "targets", Msg: "want a list of targets (name, kind and the kind's settings)"})
	}
	return out, ps
}

// target reads one instance. In the older form kind is the entry's key
// and the instance is named after it.
func (d *document) target(n *yaml.Node, path, kind string, kinds engine.Registry) (Target, []Problem) {
	t := Target{Path: path, Name: kind}
	kindName := kind
	var ps []Problem
	problem := func(line int, p, format string, args ...any) {
		ps = append(ps, Problem{Line: line, Path: p, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Tag == "!!null" {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	}
	if n.Kind != yaml.MappingNode {
		problem(n.Line, path, "want a mapping (name, kind and the kind's settings)")
		return t, ps
	}
	if kind == "" {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "kind" {
				kindName = n.Content[i+1].Value
			}
		}
	}
	k, ok := kinds.Lookup(kindName)
	switch {
	case kindName == "" && kind == "":
		problem(n.Line, path+".kind", "every target needs a kind (one of: %s)", kinds.Names())
	case !ok:
		problem(d.lineOf(n, "kind", n.Line), path+".kind", "unknown target kind %q (known: %s)", kindName, kinds.Names())
	}
	var settingsType reflect.Type
	if ok {
		t.Kind = k
		t.Settings = k.NewSettings()
		settingsType = reflect.TypeOf(t.Settings).Elem()
	}
	// The instance's keys: the common ones, then the kind's.
	common := map[string]reflect.Type{"guard": reflect.TypeOf(Guard{}), "maintenance": reflect.TypeOf(maintenance.Config{})}
	if kind == "" {
		common["name"], common["kind"] = reflect.TypeOf(""), reflect.TypeOf("")
	}
	own := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i], n.Content[i+1]
		p := join(path, key.Value)
		if ft, isCommon := common[key.Value]; isCommon {
			d.lines[key.Line], d.at[p] = p, key.Line
			d.walk(v, ft, p)
			var err error
			switch key.Value {
			case "name":
				err = v.Decode(&t.Name)
			case "guard":
				err = v.Decode(&t.Guard)
			case "maintenance":
				err = v.Decode(&t.Maintenance)
			}
			if err != nil {
				ps = append(ps, d.decodeProblems(err)...)
			}
			continue
		}
		if settingsType == nil {
			continue // the kind is unknown: said above
		}
		fields := structFields(settingsType)
		if _, known := fields[key.Value]; !known {
			for name, ft := range common {
				fields[name] = ft
			}
			msg := fmt.Sprintf("unknown key for a target of kind %s", kindName)
			if s := suggest(key.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			problem(key.Line, p, "%s", msg)
			continue
		}
		d.lines[key.Line], d.at[p] = p, key.Line
		d.walk(v, fields[key.Value], p)
		own.Content = append(own.Content, key, v)
	}
	if t.Settings != nil {
		if err := own.Decode(t.Settings); err != nil {
			ps = append(ps, d.decodeProblems(err)...)
		}
	}
	return t, ps
}

// lineOf finds the line of a key in a mapping node.
func (d *document) lineOf(n *yaml.Node, key string, def int) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return def
}

// validateTargets checks names (valid, unique), guards and each kind's
// settings.
func validateTargets(ts []Target, src ldapx.Config, ps *problems) {
	bases := []string{src.Users.BaseDN, src.Collaborations.BaseDN}
	if p := src.ProductionAccounts; p != nil {
		bases = append(bases, p.BaseDN)
	}
	seen := map[string]string{}
	for _, t := range ts {
		switch {
		case t.Name == "":
			ps.add(t.Path+".name", "every target needs a name")
		case !instanceName.MatchString(t.Name):
			ps.add(t.Path+".name", "%q is not a target name (lower-case letters, digits, - and _)", t.Name)
		case seen[t.Name] != "":
			ps.add(t.Path+".name", "%q is also the name of %s", t.Name, seen[t.Name])
		default:
			seen[t.Name] = t.Path
		}
		t.Guard.validate(ps, t.Path+".guard")
		validateMaintenance(t.Maintenance, ps, t.Path+".maintenance")
		if t.Settings != nil {
			for _, p := range t.Settings.Validate() {
				ps.add(t.Path+"."+p.Key, "%s", p.Msg)
			}
			if sc, ok := t.Settings.(engine.SourceChecker); ok {
				for _, p := range sc.CheckSource(src.URIs, bases) {
					ps.add(t.Path+"."+p.Key, "%s", p.Msg)
				}
			}
		}
	}
}

// validateMaintenance checks windows (an end after the start) and that the
// calendar reads.
func validateMaintenance(m maintenance.Config, ps *problems, path string) {
	for i, w := range m.Windows {
		p := fmt.Sprintf("%s.windows[%d]", path, i)
		switch {
		case w.Start.IsZero() || w.End.IsZero():
			ps.add(p, "needs a start and an end (e.g. 2026-12-08T07:00:00Z)")
		case !w.End.After(w.Start):
			ps.add(p+".end", "must be after the start")
		}
	}
	if m.Calendar != "" {
		if !filepath.IsAbs(m.Calendar) {
			ps.add(path+".calendar", "must be an absolute path, got %q", m.Calendar)
		} else if _, err := maintenance.Parse(m.Calendar); err != nil {
			ps.add(path+".calendar", "%v", err)
		}
	}
	if len(m.Services) > 0 && m.Calendar == "" {
		ps.add(path+".services", "selects events of a calendar, and no calendar is set")
	}
}
