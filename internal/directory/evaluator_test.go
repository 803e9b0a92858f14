package directory

import (
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestSameCoversEveryField: the comparisons the Evaluator decides with
// see a change of any field (a field added later and not compared would
// let a change go unevaluated).
func TestSameCoversEveryField(t *testing.T) {
	check := func(name string, v any, same func(a, b reflect.Value) bool, skip ...string) {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			if slices.Contains(skip, f.Name) {
				continue
			}
			a, b := reflect.New(typ).Elem(), reflect.New(typ).Elem()
			a.Set(reflect.ValueOf(v))
			b.Set(reflect.ValueOf(v))
			if !same(a, b) {
				t.Fatalf("%s: equal values compare different", name)
			}
			if !setDifferent(b.Field(i)) {
				t.Fatalf("%s.%s: the test cannot change a field of type %s", name, f.Name, f.Type)
			}
			if same(a, b) {
				t.Errorf("%s.%s: a change of it is not seen", name, f.Name)
			}
		}
	}
	c := Collaboration{DN: "cn=a", Name: "a", Members: []string{"x"}, Contacts: map[Role][]string{RoleCollaboration: {"x"}}, Lists: []string{"l"}}
	check("Collaboration", c, func(a, b reflect.Value) bool {
		x, y := a.Interface().(Collaboration), b.Interface().(Collaboration)
		return sameCollaboration(&x, &y)
	})
	p := ProductionAccount{Managers: []string{"m@x"}}
	check("ProductionAccount", p, func(a, b reflect.Value) bool {
		return sameProduction(a.Interface().(ProductionAccount), b.Interface().(ProductionAccount))
	})
	pol := Policy{ProductionLabel: regexp.MustCompile("a"), UIDRange: &IDRange{1, 2}, GIDRange: &IDRange{1, 2},
		Reserved: &Reserved{Names: map[string]string{"a": "b"}}, Actions: map[ViolationKind]Action{KindMailDomain: ActionHold}}
	check("Policy", pol, func(a, b reflect.Value) bool {
		x, y := a.Interface().(Policy), b.Interface().(Policy)
		return samePolicy(&x, &y)
	}, "Now")
}

// setDifferent gives a field a value different from the one it has.
func setDifferent(f reflect.Value) bool {
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Bool:
		f.SetBool(!f.Bool())
	case reflect.Int, reflect.Int64:
		f.SetInt(f.Int() + 1)
	case reflect.Uint32:
		f.SetUint(f.Uint() + 1)
	case reflect.Slice:
		f.Set(reflect.Append(reflect.MakeSlice(f.Type(), 0, 1), reflect.New(f.Type().Elem()).Elem()))
	case reflect.Map:
		m := reflect.MakeMap(f.Type())
		m.SetMapIndex(reflect.New(f.Type().Key()).Elem(), reflect.New(f.Type().Elem()).Elem())
		f.Set(m)
	case reflect.Pointer:
		switch v := f.Interface().(type) {
		case *regexp.Regexp:
			f.Set(reflect.ValueOf(regexp.MustCompile(v.String() + "b")))
		case *IDRange:
			f.Set(reflect.ValueOf(&IDRange{v.Min, v.Max + 1}))
		case *Reserved:
			f.Set(reflect.ValueOf(&Reserved{UIDs: map[uint32]string{0: "root"}}))
		default:
			return false
		}
	case reflect.Struct:
		switch v := f.Interface().(type) {
		case time.Time:
			f.Set(reflect.ValueOf(v.Add(time.Second)))
		case Allocation:
			f.Set(reflect.ValueOf(Allocation{CoreHours: v.CoreHours + 1}))
		default:
			return false
		}
	default:
		return false
	}
	return true
}
