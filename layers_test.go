package collabsync

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/collabsync/collabsync/"

// layer places a package (a path inside the module) on its floor, bottom
// first, and names its family: a package imports only from lower floors
// and from its own floor's family.
//
//	programs   cmd/...
//	wiring     app/...       configuration, store, the engine's wiring, the daemon
//	adapters   ldapx, accounting/..., sync/...   (three families)
//	domain     internal/...  the model and the rules, small helpers, test harness
func layer(pkg string) (floor int, family string) {
	first, _, _ := strings.Cut(pkg, "/")
	switch first {
	case "internal":
		return 0, "internal"
	case "ldapx", "accounting", "sync":
		return 1, first
	case "app":
		return 2, "app"
	case "cmd":
		return 3, pkg // programs do not import each other
	}
	return -1, ""
}

// TestLayers: no package imports one on a higher floor, or one of another
// family on its own floor (the LDAP layer knows no target kind, no log
// parser, no configuration file and no store). Tests may import upwards.
func TestLayers(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if pkg == "." {
			return nil
		}
		floor, family := layer(pkg)
		if floor < 0 {
			t.Errorf("%s: package %s is on no floor: add it to layer()", path, pkg)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			dep, ok := strings.CutPrefix(ip, module)
			if !ok || dep == pkg {
				continue
			}
			dfloor, dfamily := layer(dep)
			switch {
			case dfloor > floor:
				t.Errorf("%s: %s imports %s, a floor up", fset.Position(imp.Pos()), pkg, dep)
			case dfloor == floor && dfamily != family && floor > 0:
				t.Errorf("%s: %s imports %s, another family on its floor", fset.Position(imp.Pos()), pkg, dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
