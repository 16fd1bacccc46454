// Command render renders a Helm chart the way `helm template` does, for the
// subset of Helm the provex chart uses: Go text/template with the sprig
// functions, Helm's extra functions (include, tpl, toYaml, fromYaml, toJson,
// fromJson, required, lookup), the .Values/.Release/.Chart/.Capabilities/
// .Template/.Files objects, values coalescing (user values over values.yaml,
// null deletes a key) and missingkey=zero with "<no value>" erased.
//
// It builds offline against Debian's golang-*-dev packages in GOPATH mode
// (GO111MODULE=off GOPATH=/usr/share/gocode). It prints one JSON object:
// {"values": merged values, "manifests": {template path: text}, "notes": text}.
// A template or values error goes to stderr and the exit status is 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// VersionSet is .Capabilities.APIVersions; templates call .Has on it.
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

// Files is .Files: chart files outside templates/.
type Files struct{ root string }

func (f Files) Get(name string) string {
	data, err := os.ReadFile(filepath.Join(f.root, filepath.Clean("/"+name)))
	if err != nil {
		return ""
	}
	return string(data)
}

// jsonish converts YAML-decoded data to what Helm holds: JSON types
// (map[string]interface{}, []interface{}, float64 numbers).
func jsonish(in interface{}) (interface{}, error) {
	normal, err := stringKeys(in)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(normal)
	if err != nil {
		return nil, err
	}
	var out interface{}
	err = json.Unmarshal(raw, &out)
	return out, err
}

func stringKeys(in interface{}) (interface{}, error) {
	switch v := in.(type) {
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(v))
		for k, val := range v {
			ks, ok := k.(string)
			if !ok {
				ks = fmt.Sprint(k)
			}
			conv, err := stringKeys(val)
			if err != nil {
				return nil, err
			}
			out[ks] = conv
		}
		return out, nil
	case []interface{}:
		out := make([]interface{}, len(v))
		for i, val := range v {
			conv, err := stringKeys(val)
			if err != nil {
				return nil, err
			}
			out[i] = conv
		}
		return out, nil
	default:
		return v, nil
	}
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	conv, err := jsonish(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, ok := conv.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: expected a mapping at the top level", path)
	}
	return m, nil
}

// coalesce merges defaults under user values, as Helm does: maps merge
// deeply, a user null deletes the key, anything else replaces.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
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

func toYAML(v interface{}) string {
	// Helm goes through JSON (sigs.k8s.io/yaml): keys sorted, JSON numbers.
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		m["Error"] = err.Error()
		return m
	}
	conv, err := jsonish(raw)
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	if cm, ok := conv.(map[string]interface{}); ok {
		return cm
	}
	return m
}

func toJSON(v interface{}) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(raw)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func required(msg string, val interface{}) (interface{}, error) {
	if val == nil {
		return val, errors.New(msg)
	}
	if s, ok := val.(string); ok && s == "" {
		return val, errors.New(msg)
	}
	return val, nil
}

type renderer struct {
	set *template.Template
}

func (r *renderer) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these: a chart must not read the renderer's environment.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["required"] = required
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // helm template: no cluster
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := r.set.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := r.set.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("release", "provex", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.29.0", "cluster version for .Capabilities")
	apiVersions := flag.String("api-versions", "", "extra API versions for .Capabilities.APIVersions, comma-separated")
	var valueFiles multiFlag
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Parse()
	if *chartDir == "" {
		fmt.Fprintln(os.Stderr, "render: -chart is required")
		os.Exit(2)
	}
	if err := run(*chartDir, *release, *namespace, *kubeVersion, *apiVersions, valueFiles); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(chartDir, release, namespace, kubeVersion, apiVersions string, valueFiles []string) error {
	meta, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := meta["name"].(string)
	chart := map[string]interface{}{}
	for k, v := range meta {
		// Helm exposes Chart.yaml keys capitalised: .Chart.Name, .Chart.AppVersion.
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}

	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, vf := range valueFiles {
		user, err := readYAMLMap(vf)
		if err != nil {
			return err
		}
		values = coalesce(user, values)
	}

	versions := VersionSet{"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "policy/v1"}
	for _, v := range strings.Split(apiVersions, ",") {
		if v != "" {
			versions = append(versions, v)
		}
	}
	kv := strings.TrimPrefix(kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("-kube-version %q: expected vMAJOR.MINOR.PATCH", kubeVersion)
	}
	caps := map[string]interface{}{
		"KubeVersion": KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1], GitVersion: "v" + kv},
		"APIVersions": versions,
	}

	var paths []string
	tdir := filepath.Join(chartDir, "templates")
	err = filepath.WalkDir(tdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)

	r := &renderer{}
	r.set = template.New(chartName).Option("missingkey=zero")
	r.set.Funcs(r.funcs())
	names := map[string]string{}
	for _, p := range paths {
		rel, _ := filepath.Rel(chartDir, p)
		name := chartName + "/" + filepath.ToSlash(rel)
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := r.set.New(name).Parse(string(text)); err != nil {
			return fmt.Errorf("parse error: %w", err)
		}
		names[name] = filepath.ToSlash(rel)
	}

	out := map[string]interface{}{"values": values}
	manifests := map[string]string{}
	notes := ""
	for _, p := range paths {
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(filepath.Base(p), "_") {
			continue
		}
		name := chartName + "/" + rel
		data := map[string]interface{}{
			"Values":       values,
			"Chart":        chart,
			"Capabilities": caps,
			"Files":        Files{root: chartDir},
			"Template":     map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"},
			"Release": map[string]interface{}{
				"Name": release, "Namespace": namespace, "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
		}
		var buf bytes.Buffer
		if err := r.set.ExecuteTemplate(&buf, name, data); err != nil {
			return fmt.Errorf("execution error: %w", err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.HasSuffix(rel, "NOTES.txt") {
			notes = text
		} else {
			manifests[rel] = text
		}
	}
	out["manifests"] = manifests
	out["notes"] = notes
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}
