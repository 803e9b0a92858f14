package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/collabsync/collabsync/internal/textdist"
)

// document is a parsed configuration file as YAML saw it, before decoding:
// which keys are present (so only absent ones get defaults), where each
// value is (so problems name their line), and which keys the schema does
// not know.
type document struct {
	present map[string]bool // dotted paths of non-null values: "ldap.page_size", "accounting.sources[0].name"
	lines   map[int]string  // line → the path of the value on it (the innermost)
	at      map[string]int  // path → the line of its key (or list item)
	root    int             // the document's first line
	unknown []Problem
}

// has reports whether the file gives path a (non-null) value.
func (d *document) has(path string) bool { return d.present[path] }

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walkDocument reads root against the schema of Config.
func walkDocument(root *yaml.Node) *document {
	d := &document{present: map[string]bool{}, lines: map[int]string{}, at: map[string]int{}}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != 0 {
		d.root = n.Line
		d.walk(n, reflect.TypeOf(Config{}), "")
	}
	return d
}

// line finds the line of a path, or of its nearest parent in the file
// (a missing key is reported where its section is).
func (d *document) line(path string) int {
	for path != "" {
		if l, ok := d.at[path]; ok {
			return l
		}
		if i := strings.LastIndexAny(path, ".["); i >= 0 {
			path = path[:i]
		} else {
			path = ""
		}
	}
	return d.root
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *document) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return
	}
	if path != "" {
		d.present[path] = true
		d.lines[n.Line] = path
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // a scalar with its own syntax (Duration)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type
		}
		fields := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				}
				d.unknown = append(d.unknown, Problem{Line: k.Line, Path: join(path, k.Value), Msg: msg})
				continue
			}
			d.lines[k.Line] = join(path, k.Value)
			d.at[join(path, k.Value)] = k.Line
			d.walk(v, ft, join(path, k.Value))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.at[join(path, n.Content[i].Value)] = n.Content[i].Line
			d.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			d.at[fmt.Sprintf("%s[%d]", path, i)] = item.Line
			d.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// structFields maps a struct's YAML keys to their types, inline fields
// included.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case strings.Contains(opts, "inline"):
			for k, v := range structFields(f.Type) {
				out[k] = v
			}
		case name == "":
			out[strings.ToLower(f.Name)] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

// suggest finds the known key a mistyped one most likely meant: the same
// letters without separators and case, or at most two edits away.
func suggest(key string, known map[string]reflect.Type) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	}
	best, bestDist := "", 3
	for k := range known {
		if norm(k) == norm(key) {
			return k
		}
		dist := textdist.Levenshtein(key, k)
		if nk, nkey := norm(k), norm(key); len(nk) >= 3 && len(nkey) >= 3 && (strings.HasPrefix(nk, nkey) || strings.HasPrefix(nkey, nk)) {
			dist = min(dist, 1) // one spelled out, the other short: directory for dir
		}
		if dist < bestDist || (dist == bestDist && k < best) {
			best, bestDist = k, dist
		}
	}
	if bestDist > len(key)/2 {
		return ""
	}
	return best
}

var (
	yamlLine       = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlUnmarshal  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlTypeNames  = map[string]string{"seq": "a list", "map": "a mapping", "bool": "a boolean", "null": "nothing"}
	goTypeWantings = []struct{ prefix, want string }{
		{"[]", "a list"}, {"map[", "a mapping"}, {"int", "an integer"}, {"uint", "a non-negative integer"},
		{"float", "a number"}, {"bool", "true or false"}, {"string", "a string"}, {"config.", "a mapping"},
	}
)

// decodeProblems turns the decoder's errors ("line 7: cannot unmarshal
// !!str `lots` into int") into problems in the file's own words
// ("ldap.page_size: want an integer, got "lots"").
func (d *document) decodeProblems(err error) []Problem {
	var msgs []string
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		p := Problem{Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = sm[2]
			p.Path = d.lines[p.Line]
		}
		if um := yamlUnmarshal.FindStringSubmatch(p.Msg); um != nil {
			got := yamlTypeNames[um[1]]
			if got == "" {
				got = strconv.Quote(um[2])
			}
			want := um[3]
			for _, w := range goTypeWantings {
				if strings.HasPrefix(want, w.prefix) {
					want = w.want
					break
				}
			}
			p.Msg = fmt.Sprintf("want %s, got %s", want, got)
		}
		out = append(out, p)
	}
	return out
}
