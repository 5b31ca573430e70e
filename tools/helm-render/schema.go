// values.schema.json: the chart's values are checked against it after merging, as helm does for
// install, upgrade, template and lint. A JSON Schema (draft 7) subset, the keywords the chart
// uses: type, properties, additionalProperties, required, enum, items, minimum, maximum,
// anyOf, allOf and local $ref ("#/definitions/NAME"); any other keyword is an error here, so
// the schema cannot silently say more than this checks (tests/deploy/test_chart.py also checks
// it with python3-jsonschema).
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

var schemaKeywords = map[string]bool{
	"$schema": true, "title": true, "description": true, "definitions": true, "type": true,
	"properties": true, "additionalProperties": true, "required": true, "enum": true, "items": true,
	"minimum": true, "maximum": true, "anyOf": true, "allOf": true, "$ref": true,
}

type schemaChecker struct {
	root map[string]interface{}
}

func loadSchema(data []byte) (*schemaChecker, error) {
	var root map[string]interface{}
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("values.schema.json: %v", err)
	}
	return &schemaChecker{root: root}, nil
}

func jsonType(v interface{}) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case map[string]interface{}:
		return "object"
	case []interface{}:
		return "array"
	case float64:
		if t == math.Trunc(t) && !math.IsInf(t, 0) {
			return "integer"
		}
		return "number"
	case int, int64:
		return "integer"
	}
	return fmt.Sprintf("%T", v)
}

func number(v interface{}) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	}
	return 0, false
}

func typeMatches(want string, v interface{}) bool {
	got := jsonType(v)
	return got == want || (want == "number" && got == "integer")
}

func where(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// check appends to errs every way `v` at `path` fails `s`.
func (c *schemaChecker) check(s map[string]interface{}, v interface{}, path string, errs *[]string) {
	for k := range s {
		if !schemaKeywords[k] {
			*errs = append(*errs, fmt.Sprintf("values.schema.json: keyword %q (at %s) is not supported by helm-render", k, where(path)))
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		defs, _ := c.root["definitions"].(map[string]interface{})
		target, ok := defs[name].(map[string]interface{})
		if !ok || name == ref {
			*errs = append(*errs, fmt.Sprintf("values.schema.json: unresolved $ref %q", ref))
			return
		}
		c.check(target, v, path, errs)
	}
	if t, ok := s["type"]; ok {
		var want []string
		switch tt := t.(type) {
		case string:
			want = []string{tt}
		case []interface{}:
			for _, x := range tt {
				want = append(want, fmt.Sprint(x))
			}
		}
		matched := false
		for _, w := range want {
			matched = matched || typeMatches(w, v)
		}
		if !matched {
			*errs = append(*errs, fmt.Sprintf("%s: expected %s, got %s", where(path), strings.Join(want, " or "), jsonType(v)))
			return
		}
	}
	if enum, ok := s["enum"].([]interface{}); ok {
		found := false
		for _, e := range enum {
			found = found || reflect.DeepEqual(e, v) || fmt.Sprint(e) == fmt.Sprint(v) && jsonType(e) == jsonType(v)
		}
		if !found {
			*errs = append(*errs, fmt.Sprintf("%s: %v is not one of %v", where(path), v, enum))
		}
	}
	if n, ok := number(v); ok {
		if min, ok := s["minimum"].(float64); ok && n < min {
			*errs = append(*errs, fmt.Sprintf("%s: %v is below the minimum %v", where(path), v, min))
		}
		if max, ok := s["maximum"].(float64); ok && n > max {
			*errs = append(*errs, fmt.Sprintf("%s: %v is above the maximum %v", where(path), v, max))
		}
	}
	if m, ok := v.(map[string]interface{}); ok {
		props, _ := s["properties"].(map[string]interface{})
		if req, ok := s["required"].([]interface{}); ok {
			for _, r := range req {
				if _, has := m[fmt.Sprint(r)]; !has {
					*errs = append(*errs, fmt.Sprintf("%s: %q is required", where(path), r))
				}
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := path + "." + k
			if path == "" {
				sub = k
			}
			if ps, ok := props[k].(map[string]interface{}); ok {
				c.check(ps, m[k], sub, errs)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					*errs = append(*errs, fmt.Sprintf("%s: unknown key %q (a typo? see values.yaml)", where(path), k))
				}
			case map[string]interface{}:
				c.check(ap, m[k], sub, errs)
			}
		}
	}
	if a, ok := v.([]interface{}); ok {
		if items, ok := s["items"].(map[string]interface{}); ok {
			for i, x := range a {
				c.check(items, x, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
	if all, ok := s["allOf"].([]interface{}); ok {
		for _, sub := range all {
			if ss, ok := sub.(map[string]interface{}); ok {
				c.check(ss, v, path, errs)
			}
		}
	}
	if any, ok := s["anyOf"].([]interface{}); ok {
		var firstErrs []string
		matched := false
		for _, sub := range any {
			if ss, ok := sub.(map[string]interface{}); ok {
				var e []string
				c.check(ss, v, path, &e)
				if len(e) == 0 {
					matched = true
					break
				}
				if firstErrs == nil {
					firstErrs = e
				}
			}
		}
		if !matched {
			*errs = append(*errs, fmt.Sprintf("%s: matches none of anyOf (first: %s)", where(path), strings.Join(firstErrs, "; ")))
		}
	}
}

// validate returns the schema errors of the merged values, like helm's
// "values don't meet the specifications of the schema(s)".
func (c *schemaChecker) validate(vals map[string]interface{}) []string {
	var errs []string
	c.check(c.root, interface{}(vals), "", &errs)
	return errs
}
