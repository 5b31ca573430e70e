// helm-render renders a Helm chart (apiVersion v2, no subcharts) the way `helm template` does,
// for machines without helm: Go's text/template with the sprig function library and Helm's own
// functions (include, tpl, required, toYaml, fromYaml, toJson, fromJson, lookup), values merged
// like Helm (chart values.yaml, then each -f file, then --set; null deletes a key) and numbers
// from YAML decoded as float64 like Helm does (so `{{ .Values.n }}` prints 3.3554432e+07 for a big
// number here exactly as it would under helm, and the chart must use `int64`).
//
// Build offline against Debian's Go packages (golang-go, golang-github-masterminds-sprig-dev,
// golang-gopkg-yaml.v2-dev) in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/.gocache go build -o helm-render .
//
// Usage:
//
//	helm-render [-f values.yaml]... [--set a.b=v]... [--set-string a.b=v]... [--release NAME]
//	            [--namespace NS] [--api-versions group/version]... [--kube-version v1.29.0]
//	            [--notes FILE] CHART_DIR
//
// Output: like `helm template`: for every document of every rendered template (templates/*,
// except partials named _* and NOTES.txt), "---\n# Source: CHART/templates/FILE\n" and the
// document. NOTES.txt is rendered into the --notes file when given.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	sprig "github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type multiFlag []string

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "helm-render: "+format+"\n", args...)
	os.Exit(1)
}

// ---- YAML and JSON like Helm (sigs.k8s.io/yaml: YAML -> JSON -> Go values) ----

// normalize turns yaml.v2's map[interface{}]interface{} into map[string]interface{}.
func normalize(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int, int64, float64, bool:
				ks = fmt.Sprint(kk)
			default:
				return nil, fmt.Errorf("unsupported map key %#v", k)
			}
			n, err := normalize(val)
			if err != nil {
				return nil, err
			}
			m[ks] = n
		}
		return m, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			n, err := normalize(val)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	default:
		return v, nil
	}
}

// yamlToGo decodes YAML the way sigs.k8s.io/yaml does: through JSON, so numbers are float64.
func yamlToGo(data []byte, out interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	n, err := normalize(raw)
	if err != nil {
		return err
	}
	j, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return json.Unmarshal(j, out)
}

// toYAML is Helm's toYaml: sigs.k8s.io/yaml.Marshal (JSON, then yaml.v2 keeping key order),
// without the trailing newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var ms yaml.MapSlice
	var out []byte
	if len(j) > 0 && j[0] == '{' {
		if err := yaml.Unmarshal(j, &ms); err != nil {
			return ""
		}
		out, err = yaml.Marshal(ms)
	} else {
		var any interface{}
		if err := yaml.Unmarshal(j, &any); err != nil {
			return ""
		}
		out, err = yaml.Marshal(any)
	}
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yamlToGo([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yamlToGo([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// ---- values: coalesce like Helm ----

// coalesce merges src over dst (maps recursively; a null in src deletes the key).
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	if dst == nil {
		dst = map[string]interface{}{}
	}
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

// parseSet applies one --set (typed like Helm's strvals: int64, bool, null, else string).
func parseSet(vals map[string]interface{}, expr string, asString bool) error {
	eq := strings.IndexByte(expr, '=')
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key=value", expr)
	}
	key, raw := expr[:eq], expr[eq+1:]
	if strings.ContainsAny(key, "[]") {
		return fmt.Errorf("--set %q: list indexes are not supported by this renderer", expr)
	}
	var v interface{} = raw
	if !asString {
		switch {
		case raw == "true":
			v = true
		case raw == "false":
			v = false
		case raw == "null":
			v = nil
		default:
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil && (raw == "0" || !strings.HasPrefix(raw, "0")) {
				v = n
			}
		}
	}
	parts := strings.Split(key, ".")
	m := vals
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	last := parts[len(parts)-1]
	if v == nil {
		delete(m, last)
	} else {
		m[last] = v
	}
	return nil
}

// ---- built-in objects ----

type apiVersions []string

// Has reports whether "group/version" or "group/version/Kind" is available, like Helm's.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type files map[string][]byte

func (f files) Get(name string) string { return string(f[name]) }

func (f files) GetBytes(name string) []byte { return f[name] }

func (f files) Glob(pattern string) files {
	out := files{}
	for k, v := range f {
		if ok, _ := path.Match(pattern, k); ok {
			out[k] = v
		}
	}
	return out
}

func (f files) AsConfig() string {
	m := map[string]string{}
	for k, v := range f {
		m[path.Base(k)] = string(v)
	}
	return toYAML(m)
}

func (f files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// chartMeta exposes Chart.yaml with Helm's field names (.Chart.Name, .Chart.AppVersion, ...).
func chartMeta(raw map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range raw {
		if k == "appVersion" {
			out["AppVersion"] = v
			continue
		}
		if k == "kubeVersion" {
			out["KubeVersion"] = v
			continue
		}
		if k == "apiVersion" {
			out["APIVersion"] = v
			continue
		}
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

// ---- rendering ----

var docSep = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

func main() {
	var valueFiles, sets, setStrings, apis multiFlag
	release, namespace, kubeVersion, notesOut, chartDir := "release-name", "default", "v1.29.0", "", ""
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() string {
			if eq := strings.IndexByte(a, '='); eq > 0 && strings.HasPrefix(a, "--") {
				return a[eq+1:]
			}
			i++
			if i >= len(args) {
				die("%s needs a value", a)
			}
			return args[i]
		}
		name := a
		if eq := strings.IndexByte(a, '='); eq > 0 && strings.HasPrefix(a, "--") {
			name = a[:eq]
		}
		switch name {
		case "-f", "--values":
			valueFiles = append(valueFiles, val())
		case "--set":
			sets = append(sets, val())
		case "--set-string":
			setStrings = append(setStrings, val())
		case "--release", "--name":
			release = val()
		case "-n", "--namespace":
			namespace = val()
		case "-a", "--api-versions":
			apis = append(apis, val())
		case "--kube-version":
			kubeVersion = val()
		case "--notes":
			notesOut = val()
		case "-h", "--help":
			fmt.Println("usage: helm-render [-f values.yaml]... [--set k=v]... [--set-string k=v]... " +
				"[--release NAME] [--namespace NS] [--api-versions G/V]... [--kube-version V] [--notes FILE] CHART_DIR")
			return
		default:
			if strings.HasPrefix(a, "-") || chartDir != "" {
				die("unexpected argument %q", a)
			}
			chartDir = a
		}
	}
	if chartDir == "" {
		die("no chart directory given")
	}

	// Chart.yaml
	chartRaw := map[string]interface{}{}
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		die("%v", err)
	}
	if err := yamlToGo(data, &chartRaw); err != nil {
		die("Chart.yaml: %v", err)
	}
	chartName, _ := chartRaw["name"].(string)
	if chartRaw["apiVersion"] != "v2" || chartName == "" {
		die("Chart.yaml: apiVersion must be v2 and name must be set")
	}
	version, _ := chartRaw["version"].(string)
	if _, err := semver.StrictNewVersion(version); err != nil {
		die("Chart.yaml: version %q is not strict SemVer 2: %v", version, err)
	}
	if _, err := os.Stat(filepath.Join(chartDir, "charts")); err == nil {
		die("subcharts are not supported by this renderer")
	}

	// values
	vals := map[string]interface{}{}
	if data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml")); err == nil {
		if err := yamlToGo(data, &vals); err != nil {
			die("values.yaml: %v", err)
		}
	}
	for _, f := range valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			die("%v", err)
		}
		user := map[string]interface{}{}
		if err := yamlToGo(data, &user); err != nil {
			die("%s: %v", f, err)
		}
		vals = coalesce(vals, user)
	}
	for _, s := range sets {
		if err := parseSet(vals, s, false); err != nil {
			die("%v", err)
		}
	}
	for _, s := range setStrings {
		if err := parseSet(vals, s, true); err != nil {
			die("%v", err)
		}
	}

	// values.schema.json, like helm: the merged values must meet it.
	if data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json")); err == nil {
		checker, err := loadSchema(data)
		if err != nil {
			die("%v", err)
		}
		if errs := checker.validate(vals); len(errs) > 0 {
			die("values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n- %s",
				chartName, strings.Join(errs, "\n- "))
		}
	}

	// files (for .Files) and templates
	allFiles := files{}
	var tplNames []string
	tplText := map[string]string{}
	err = filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			name := chartName + "/" + rel
			tplNames = append(tplNames, name)
			tplText[name] = string(b)
		} else if rel != "Chart.yaml" && rel != "values.yaml" && rel != "values.schema.json" && !strings.HasPrefix(rel, ".") {
			allFiles[rel] = b
		}
		return nil
	})
	if err != nil {
		die("%v", err)
	}
	sort.Strings(tplNames)

	kv, err := semver.NewVersion(kubeVersion)
	if err != nil {
		die("--kube-version: %v", err)
	}
	baseAPIs := apiVersions{"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "autoscaling/v1",
		"rbac.authorization.k8s.io/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1"}
	baseAPIs = append(baseAPIs, apis...)
	top := map[string]interface{}{
		"Values": vals,
		"Release": map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart": chartMeta(chartRaw),
		"Capabilities": map[string]interface{}{
			"APIVersions": baseAPIs,
			"KubeVersion": map[string]interface{}{"Version": "v" + kv.String(), "GitVersion": "v" + kv.String(),
				"Major": strconv.FormatUint(kv.Major(), 10), "Minor": strconv.FormatUint(kv.Minor(), 10)},
			"HelmVersion": map[string]interface{}{"Version": "v3.14.0"},
		},
		"Files": allFiles,
	}

	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includedNames := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		nt, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := nt.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["fromJsonArray"] = fromJSONArray
	funcs["toToml"] = func(interface{}) string { return "" }
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	t.Funcs(funcs)
	for _, name := range tplNames {
		if _, err := t.New(name).Parse(tplText[name]); err != nil {
			die("parse error: %v", err)
		}
	}

	render := func(name string) (string, error) {
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, vals); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}

	var out strings.Builder
	for _, name := range tplNames {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		text, err := render(name)
		if err != nil {
			die("render error: %v", err)
		}
		for _, doc := range docSep.Split(text, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(doc, " \t\n"))
		}
	}
	if notesOut != "" {
		name := chartName + "/templates/NOTES.txt"
		notes := ""
		if _, ok := tplText[name]; ok {
			if notes, err = render(name); err != nil {
				die("render error: %v", err)
			}
		}
		if err := os.WriteFile(notesOut, []byte(notes), 0o644); err != nil {
			die("%v", err)
		}
	}
	os.Stdout.WriteString(out.String())
}
