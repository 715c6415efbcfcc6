package conf

import (
	"cmp"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// checkTable compares a decoded TOML table m with the struct type t whose
// fields it is to fill, and returns an error for the first key (in file
// order) that t has no field for or whose value has the wrong TOML type.
// Field names match the toml tags exactly; the decoder would also accept
// them in another case, which is not worth being lenient about.
func (c *Config) checkTable(path string, m map[string]any, t reflect.Type) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// File order when the keys are indexed; by name otherwise, for stable
	// results. Unindexed keys (line 0) come first; they are rare.
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.line(join(path, a)), c.line(join(path, b))), cmp.Compare(a, b))
	})
	for _, k := range keys {
		key := join(path, k)
		f, ok := fieldByTag(t, k)
		if !ok {
			return c.Errorf(key, "unknown key")
		}
		if err := c.checkValue(key, m[k], f.Type); err != nil {
			return err
		}
	}
	return nil
}

// checkValue checks that the TOML value v, written at key, fits type t.
func (c *Config) checkValue(key string, v any, t reflect.Type) error {
	// A type that decodes more than one TOML type (a string or an integer) checks v itself.
	if u, ok := reflect.New(t).Interface().(toml.Unmarshaler); ok {
		if err := u.UnmarshalTOML(v); err != nil {
			return c.Errorf(key, "%w", err)
		}
		return nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		s, ok := v.(string)
		if !ok {
			return c.Errorf(key, "expected %s, found %s", describe(t), tomlType(v))
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return c.Errorf(key, "%w", err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); ok {
			return nil
		}
	case reflect.Bool:
		if _, ok := v.(bool); ok {
			return nil
		}
	case reflect.Int:
		if n, ok := v.(int64); ok {
			if int64(int(n)) != n {
				return c.Errorf(key, "%d is out of range", n)
			}
			return nil
		}
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			return c.checkTable(key, m, t)
		}
	case reflect.Slice:
		if items, ok := asArray(v); ok {
			for i, item := range items {
				if err := c.checkValue(key+"["+strconv.Itoa(i)+"]", item, t.Elem()); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		panic("conf: checkValue: no rule for " + t.String()) // a new field type needs one
	}
	return c.Errorf(key, "expected %s, found %s", describe(t), tomlType(v))
}

// fieldByTag returns the field of struct type t whose toml tag is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("toml") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// asArray returns the elements of a TOML array: the decoder gives
// []map[string]any for [[tables]] and []any for inline arrays.
func asArray(v any) ([]any, bool) {
	switch v := v.(type) {
	case []any:
		return v, true
	case []map[string]any:
		items := make([]any, len(v))
		for i, m := range v {
			items[i] = m
		}
		return items, true
	}
	return nil, false
}

// describe names what a value of Go type t is written as in TOML.
func describe(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a duration string such as "24h"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Struct:
		return "a table"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "an array of tables"
	case t.Kind() == reflect.Slice:
		return "an array"
	}
	return t.String()
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// join appends key k to the dotted path.
func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
