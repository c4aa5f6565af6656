// helmrender renders a Helm v3 chart offline, as `helm template` does, for
// the chart checks on machines where the helm binary cannot be installed.
//
// It is built from the same libraries Helm renders with, as Debian ships
// them: text/template, Masterminds/sprig (the template functions),
// sigs.k8s.io/yaml (toYaml/fromYaml and values loading, so numbers are
// float64 exactly as in Helm) and xeipuuv/gojsonschema (values.schema.json).
// What it reproduces, because the chart relies on it: values.yaml merged
// with -f files and --set/--set-string/--set-file (typed like Helm: true,
// false, null, integers), null deleting a default, include/tpl/required/
// fail/lookup, missingkey=zero with "<no value>" removed, partials (_*.tpl)
// not emitted, NOTES.txt rendered (so its errors surface) but not printed,
// .Release/.Chart/.Capabilities/.Template/.Files.
//
// Usage mirrors helm:
//
//	helmrender template NAME CHART [--namespace NS] [--create-namespace]
//	    [-f values.yaml]... [--set k=v]... [--set-string k=v]...
//	    [--set-file k=path]... [--kube-version v1.34.0]
//
// The check scripts call real helm instead whenever it is on PATH.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver/v3"
	"github.com/Masterminds/sprig/v3"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

// recursionLimit bounds include/tpl nesting, as Helm does, so a template
// that includes itself fails instead of exhausting the stack.
const recursionLimit = 1000

type chartMeta struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	KubeVersion string   `json:"kubeVersion"`
	Keywords    []string `json:"keywords"`
	Home        string   `json:"home"`
}

// Chart exposes the metadata with Helm's capitalised field names.
type Chart struct {
	APIVersion, Name, Version, AppVersion, Description, Type, KubeVersion, Home string
	Keywords                                                                    []string
}

type KubeVersion struct{ Version, Major, Minor, GitVersion string }

func (k KubeVersion) String() string { return k.Version }

type VersionSet []string

func (v VersionSet) Has(s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

type Files map[string][]byte

func (f Files) Get(name string) string     { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }

type multiFlag []string

func fatalf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "template" {
		args = args[1:]
	}
	var positional []string
	var valueFiles, sets, setStrings, setFiles multiFlag
	namespace := "default"
	kubeVersion := "v1.34.0"
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if eq := strings.IndexByte(a, '='); eq >= 0 && strings.HasPrefix(a, "--") {
				return a[eq+1:]
			}
			if i+1 >= len(args) {
				fatalf("flag %s needs a value", a)
			}
			i++
			return args[i]
		}
		name := a
		if eq := strings.IndexByte(a, '='); eq >= 0 && strings.HasPrefix(a, "--") {
			name = a[:eq]
		}
		switch name {
		case "-n", "--namespace":
			namespace = next()
		case "-f", "--values":
			valueFiles = append(valueFiles, next())
		case "--set":
			sets = append(sets, next())
		case "--set-string":
			setStrings = append(setStrings, next())
		case "--set-file":
			setFiles = append(setFiles, next())
		case "--kube-version":
			kubeVersion = next()
		case "--create-namespace":
			// Accepted as helm template accepts it; it renders nothing.
		default:
			if strings.HasPrefix(a, "-") {
				fatalf("unknown flag: %s", a)
			}
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 {
		fatalf("usage: helmrender template NAME CHART [flags]")
	}
	out, err := render(positional[0], positional[1], namespace, kubeVersion, valueFiles, sets, setStrings, setFiles)
	if err != nil {
		fatalf("%v", err)
	}
	os.Stdout.WriteString(out)
}

func loadYAMLMap(data []byte, what string) (map[string]interface{}, error) {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

func render(release, chartDir, namespace, kubeVersion string, valueFiles, sets, setStrings, setFiles []string) (string, error) {
	metaBytes, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	var meta chartMeta
	if err := yaml.Unmarshal(metaBytes, &meta); err != nil {
		return "", fmt.Errorf("Chart.yaml: %w", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return "", errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}

	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml kubeVersion: %w", err)
		}
		v, err := semver.NewVersion(kubeVersion)
		if err != nil {
			return "", fmt.Errorf("--kube-version: %w", err)
		}
		if !c.Check(v) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, kubeVersion)
		}
	}

	defaults := map[string]interface{}{}
	if b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml")); err == nil {
		if defaults, err = loadYAMLMap(b, "values.yaml"); err != nil {
			return "", err
		}
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		m, err := loadYAMLMap(b, f)
		if err != nil {
			return "", err
		}
		user = mergeMaps(user, m)
	}
	for _, s := range sets {
		if err := parseSet(s, user, false, nil); err != nil {
			return "", fmt.Errorf("failed parsing --set data: %w", err)
		}
	}
	for _, s := range setStrings {
		if err := parseSet(s, user, true, nil); err != nil {
			return "", fmt.Errorf("failed parsing --set-string data: %w", err)
		}
	}
	for _, s := range setFiles {
		readFile := func(p string) (interface{}, error) {
			b, err := os.ReadFile(p)
			return string(b), err
		}
		if err := parseSet(s, user, true, readFile); err != nil {
			return "", fmt.Errorf("failed parsing --set-file data: %w", err)
		}
	}
	values := coalesce(user, defaults)

	if schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json")); err == nil {
		if err := validateValues(meta.Name, schema, values); err != nil {
			return "", err
		}
	}

	files := Files{}
	var templates []string
	err = filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
		}
		files[rel] = b
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(templates)

	major, minor := "1", "34"
	if parts := strings.Split(strings.TrimPrefix(kubeVersion, "v"), "."); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": Chart{meta.APIVersion, meta.Name, meta.Version, meta.AppVersion, meta.Description,
			meta.Type, meta.KubeVersion, meta.Home, meta.Keywords},
		"Capabilities": Capabilities{
			KubeVersion: KubeVersion{Version: kubeVersion, Major: major, Minor: minor, GitVersion: kubeVersion},
			APIVersions: VersionSet{"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1",
				"autoscaling/v2", "monitoring.coreos.com/v1"},
			HelmVersion: map[string]string{"Version": "v3-offline-renderer"},
		},
		"Files": files,
	}

	root := template.New("gotpl").Option("missingkey=zero")
	includeDepth := map[string]int{}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// As helm's: a YAML list, or a list holding the error message.
	funcs["fromYamlArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	funcs["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	// lookup talks to a live cluster in helm; `helm template` gets an empty map.
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > recursionLimit {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	root.Funcs(funcs)

	for _, name := range templates {
		full := path.Join(meta.Name, name)
		if _, err := root.New(full).Parse(string(files[name])); err != nil {
			return "", err
		}
	}

	var out strings.Builder
	docSplit := regexp.MustCompile(`(?m)^---[ \t]*$`)
	for _, name := range templates {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		full := path.Join(meta.Name, name)
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": full, "BasePath": path.Join(meta.Name, "templates")}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, data); err != nil {
			return "", err
		}
		if base == "NOTES.txt" {
			continue
		}
		if !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".yml") {
			continue
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range docSplit.Split(text, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.Trim(doc, "\n"))
		}
	}
	return out.String(), nil
}

func validateValues(chart string, schema []byte, values map[string]interface{}) error {
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if res.Valid() {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", chart)
	for _, e := range res.Errors() {
		fmt.Fprintf(&sb, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(sb.String(), "\n"))
}

// mergeMaps merges src into dst (src wins), recursing into maps. Used to
// layer -f files onto one another.
func mergeMaps(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// coalesce lays user values over the chart defaults. A user null removes
// the default key, as in Helm.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if uok && dok {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

// ---------------------------------------------------------------- --set

// typed turns a --set value into what Helm makes of it.
func typed(v string, asString bool) interface{} {
	if asString {
		return v
	}
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	case "0":
		return int64(0)
	}
	if v != "" && v[0] != '0' {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// splitUnescaped splits s at unescaped sep characters outside {...}.
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	var cur strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(c)
			cur.WriteByte(s[i+1])
			i++
		case c == '{':
			depth++
			cur.WriteByte(c)
		case c == '}' && depth > 0:
			depth--
			cur.WriteByte(c)
		case c == sep && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type pathElem struct {
	key   string
	index int // -1 when this element is a map key
}

var indexRe = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// maxListIndex bounds --set a[N] so a typo cannot allocate a huge list.
const maxListIndex = 65536

func parseKey(k string) ([]pathElem, error) {
	var elems []pathElem
	for _, part := range splitUnescaped(k, '.') {
		if part == "" {
			return nil, fmt.Errorf("key %q has an empty element", k)
		}
		var idx []int
		for {
			m := indexRe.FindStringSubmatch(part)
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[2])
			if n > maxListIndex {
				return nil, fmt.Errorf("index %d too large in %q", n, k)
			}
			idx = append([]int{n}, idx...)
			part = m[1]
		}
		if part == "" && len(elems) == 0 {
			return nil, fmt.Errorf("key %q starts with an index", k)
		}
		if part != "" {
			elems = append(elems, pathElem{key: unescape(part), index: -1})
		}
		for _, n := range idx {
			elems = append(elems, pathElem{index: n})
		}
	}
	return elems, nil
}

// parseSet applies one --set argument ("a.b=1,c[0]=x") to vals.
func parseSet(s string, vals map[string]interface{}, asString bool, fromFile func(string) (interface{}, error)) error {
	for _, pair := range splitUnescaped(s, ',') {
		eq := -1
		for i := 0; i < len(pair); i++ {
			if pair[i] == '\\' {
				i++
				continue
			}
			if pair[i] == '=' {
				eq = i
				break
			}
		}
		if eq < 0 {
			return fmt.Errorf("key %q has no value", pair)
		}
		elems, err := parseKey(pair[:eq])
		if err != nil {
			return err
		}
		raw := pair[eq+1:]
		var val interface{}
		switch {
		case fromFile != nil:
			if val, err = fromFile(unescape(raw)); err != nil {
				return err
			}
		case strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}"):
			var list []interface{}
			if inner := raw[1 : len(raw)-1]; inner != "" {
				for _, item := range splitUnescaped(inner, ',') {
					list = append(list, typed(unescape(item), asString))
				}
			}
			val = list
		default:
			val = typed(unescape(raw), asString)
		}
		setPath(vals, elems, val)
	}
	return nil
}

func setPath(m map[string]interface{}, elems []pathElem, val interface{}) {
	var cur interface{} = m
	var assign func(interface{})
	for i, e := range elems {
		last := i == len(elems)-1
		nextIsIndex := !last && elems[i+1].index >= 0
		if e.index < 0 {
			mm := cur.(map[string]interface{})
			if last {
				mm[e.key] = val
				return
			}
			child := mm[e.key]
			child = ensureContainer(child, nextIsIndex)
			mm[e.key] = child
			key := e.key
			assign = func(v interface{}) { mm[key] = v }
			cur = child
			continue
		}
		list := cur.([]interface{})
		for len(list) <= e.index {
			list = append(list, nil)
		}
		assign(list)
		if last {
			list[e.index] = val
			return
		}
		child := ensureContainer(list[e.index], nextIsIndex)
		list[e.index] = child
		l, idx := list, e.index
		assign = func(v interface{}) { l[idx] = v }
		cur = child
	}
}

func ensureContainer(v interface{}, wantList bool) interface{} {
	if wantList {
		if l, ok := v.([]interface{}); ok {
			return l
		}
		return []interface{}{}
	}
	if m, ok := v.(map[string]interface{}); ok {
		return m
	}
	return map[string]interface{}{}
}
