package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/infergate/infergate/appliance"
)

// The Kubernetes manifests are validated with kubeconform against JSON schemas made here
// from the schemas Kubernetes and KEDA publish themselves, fetched through the Go module
// proxy (the only network CI has): the OpenAPI v3 documents in k8s.io/kubernetes's
// api/openapi-spec/v3 and the ScaledObject CRD in KEDA's config/crd/bases. kubeconform's
// default schema location is a GitHub repository, which CI cannot reach.
const (
	kubeconformModule = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"
	kubernetesModule  = "k8s.io/kubernetes@v1.32.0"
	kedaModule        = "github.com/kedacore/keda/v2@v2.18.3"
)

var manifests = []string{"kubernetes/infergate.yaml", "kubernetes/keda-scaledobject.yaml"}

// TestKubernetesManifests runs kubeconform -strict over deploy/kubernetes: every field must
// exist in the Kubernetes v1.32 (or KEDA v2.18) schema with the right type, required
// fields must be there, duplicate keys are refused. A broken copy of the StatefulSet must
// fail, so the validation is known to bite.
func TestKubernetesManifests(t *testing.T) {
	kc := kubeconform(t)
	schemas := kubeSchemas(t)
	loc := filepath.Join(schemas, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
	validate := func(files ...string) (string, error) {
		args := append([]string{"-strict", "-summary", "-output", "text", "-schema-location", loc}, files...)
		out, err := exec.Command(kc, args...).CombinedOutput()
		return string(out), err
	}
	out, err := validate(manifests...)
	if err != nil {
		t.Fatalf("kubeconform: %v\n%s", err, out)
	}
	t.Logf("kubeconform: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "Valid: 5") || !strings.Contains(out, "Invalid: 0") || !strings.Contains(out, "Skipped: 0") {
		t.Errorf("want 5 resources valid and none skipped:\n%s", out)
	}

	for _, tc := range []struct{ name, file, old, new, want string }{
		{"misspelt field", manifests[0], "  replicas: 3\n", "  replica: 3\n", "replica"},
		{"wrong type", manifests[0], "  replicas: 3\n", "  replicas: three\n", "replicas"},
		{"required field absent", manifests[0], "  serviceName: infergate\n", "", "serviceName"},
		{"misspelt probe field", manifests[0], "              path: /readyz\n", "              paht: /readyz\n", "paht"},
		{"misspelt KEDA field", manifests[1], "  maxReplicaCount: 6\n", "  maxReplicas: 6\n", "maxReplicas"},
	} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		broken := strings.Replace(string(data), tc.old, tc.new, 1)
		if broken == string(data) {
			t.Fatalf("%s: %q is no longer in %s; fix the test's edit", tc.name, tc.old, tc.file)
		}
		f := filepath.Join(t.TempDir(), "broken.yaml")
		if err := os.WriteFile(f, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := validate(f); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: kubeconform should refuse it naming %q: %v\n%s", tc.name, tc.want, err, out)
		}
	}
}

// kubeconform builds kubeconform from the module proxy (cached by the go command after the
// first run).
func kubeconform(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command(goTool(), "install", kubeconformModule)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod")
	cmd.Dir = bin
	if out, err := cmd.CombinedOutput(); err != nil {
		needNetwork(t, fmt.Sprintf("go install %s: %v\n%s", kubeconformModule, err, out))
	}
	return filepath.Join(bin, "kubeconform")
}

// needNetwork fails under CI (which has the module proxy) and skips elsewhere.
func needNetwork(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (the module proxy is unreachable?)")
}

// moduleDir downloads a module (any version, any repository the proxy serves) and returns
// its directory in the module cache.
func moduleDir(t *testing.T, mod string) string {
	t.Helper()
	cmd := exec.Command(goTool(), "mod", "download", "-json", mod)
	cmd.Dir = t.TempDir() // outside this module: nothing is added to go.mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		needNetwork(t, fmt.Sprintf("go mod download %s: %v\n%s", mod, err, out))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", mod, err, out)
	}
	return info.Dir
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// kubeSchemas writes kubeconform's standalone strict schemas (every $ref inlined, objects
// closed with additionalProperties: false) for the kinds deploy/kubernetes uses, named as
// kubeconform looks them up: <kind>-<group>-<version>.json, <kind>-<version>.json for core.
func kubeSchemas(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	k8s := filepath.Join(moduleDir(t, kubernetesModule), "api", "openapi-spec", "v3")
	for _, k := range []struct{ file, schema, out string }{
		{"api__v1_openapi.json", "io.k8s.api.core.v1.ConfigMap", "configmap-v1"},
		{"api__v1_openapi.json", "io.k8s.api.core.v1.Service", "service-v1"},
		{"apis__apps__v1_openapi.json", "io.k8s.api.apps.v1.StatefulSet", "statefulset-apps-v1"},
		{"apis__policy__v1_openapi.json", "io.k8s.api.policy.v1.PodDisruptionBudget", "poddisruptionbudget-policy-v1"},
	} {
		var doc struct {
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		b, err := os.ReadFile(filepath.Join(k8s, k.file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", k.file, err)
		}
		root, ok := doc.Components.Schemas[k.schema]
		if !ok {
			t.Fatalf("%s has no schema %s", k.file, k.schema)
		}
		s := inline(root, doc.Components.Schemas, nil)
		writeSchema(t, filepath.Join(dir, k.out+".json"), closeObjects(s))
	}

	crdFile := filepath.Join(moduleDir(t, kedaModule), "config", "crd", "bases", "keda.sh_scaledobjects.yaml")
	b, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string
				Schema struct {
					OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
				}
			}
		}
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1alpha1" {
			writeSchema(t, filepath.Join(dir, "scaledobject-keda-v1alpha1.json"), closeObjects(v.Schema.OpenAPIV3Schema))
		}
	}
	if !fileExists(filepath.Join(dir, "scaledobject-keda-v1alpha1.json")) {
		t.Fatalf("%s has no v1alpha1 schema", crdFile)
	}
	return dir
}

// inline replaces each {"$ref": "#/components/schemas/X"} with X's schema (siblings kept).
// A type that contains itself is cut off at the repetition with an open schema.
func inline(n any, defs map[string]any, seen []string) any {
	switch v := n.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if k == "description" {
				continue // size: the schemas are read by a validator, not a person
			}
			out[k] = x
		}
		if ref, ok := v["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/components/schemas/")
			delete(out, "$ref")
			if slices.Contains(seen, name) {
				return out
			}
			target, ok := defs[name]
			if !ok {
				panic("unresolved $ref " + ref)
			}
			for k, x := range inline(target, defs, append(seen, name)).(map[string]any) {
				if _, own := out[k]; !own {
					out[k] = x
				}
			}
			return out
		}
		for k, x := range out {
			out[k] = inline(x, defs, seen)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = inline(x, defs, seen)
		}
		return out
	}
	return n
}

// closeObjects adds additionalProperties: false to every object schema that lists its
// properties and does not say otherwise: kubeconform's strict schemas, so a misspelt field
// is an error instead of being ignored (as the API server would ignore it, silently).
func closeObjects(n any) any {
	switch v := n.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = closeObjects(x)
		}
		_, props := v["properties"]
		_, additional := v["additionalProperties"]
		preserve, _ := v["x-kubernetes-preserve-unknown-fields"].(bool)
		if props && !additional && !preserve {
			v["additionalProperties"] = false
		}
	case []any:
		for i, x := range v {
			v[i] = closeObjects(x)
		}
	}
	return n
}

func writeSchema(t *testing.T, path string, s any) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kubeDocs reads the YAML documents of a manifest file.
func kubeDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// get walks a decoded YAML document: get(d, "spec", "template", "spec", "containers", 0).
func get(n any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := n.(map[string]any)
			n = m[k]
		case int:
			l, _ := n.([]any)
			if k >= len(l) {
				return nil
			}
			n = l[k]
		}
	}
	return n
}

func str(n any, path ...any) string {
	v := get(n, path...)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func byKind(docs []map[string]any, kind string) map[string]any {
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	return nil
}

// TestKubernetesSettings loads the ConfigMap's infergate.yaml and the StatefulSet's
// INFERGATE_* environment with infergate's own loader, as the pod would: every key and
// variable must be a setting (an unknown one fails here, not in the cluster), and the
// result must validate. The StatefulSet, probes, scrape annotations, PodDisruptionBudget
// and ScaledObject must agree with those settings and with each other.
func TestKubernetesSettings(t *testing.T) {
	docs := kubeDocs(t, manifests[0])
	cm, sts, pdb, svc := byKind(docs, "ConfigMap"), byKind(docs, "StatefulSet"), byKind(docs, "PodDisruptionBudget"), byKind(docs, "Service")
	if cm == nil || sts == nil || pdb == nil || svc == nil {
		t.Fatalf("%s needs a ConfigMap, Service, StatefulSet and PodDisruptionBudget", manifests[0])
	}
	ctr := get(sts, "spec", "template", "spec", "containers", 0)

	// The settings, as the pod reads them: args, the mounted ConfigMap, the environment.
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "infergate.yaml")
	if err := os.WriteFile(cfgFile, []byte(str(cm, "data", "infergate.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range get(ctr, "args").([]any) {
		args = append(args, strings.ReplaceAll(fmt.Sprint(a), "/etc/infergate/infergate.yaml", cfgFile))
	}
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("container args %v: want run ...", args)
	}
	var env []string
	defined := map[string]string{}
	for _, e := range get(ctr, "env").([]any) {
		name := str(e, "name")
		val := str(e, "value")
		switch {
		case get(e, "valueFrom", "fieldRef") != nil:
			val = "infergate-0"
		case get(e, "valueFrom", "secretKeyRef") != nil:
			val = strings.Repeat("ab", 24)
		}
		// Kubernetes expands $(VAR) of variables defined earlier in the list.
		for k, v := range defined {
			val = strings.ReplaceAll(val, "$("+k+")", v)
		}
		defined[name] = val
		env = append(env, name+"="+val)
	}
	cfg, err := appliance.Load(args[1:], env, io.Discard)
	if err != nil {
		t.Fatalf("infergate run %v with the StatefulSet's environment: %v", args[1:], err)
	}
	if w := cfg.Warnings(); len(w) > 0 {
		t.Errorf("the loader warns: %v", w)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the ConfigMap's settings do not validate: %v", err)
	}
	if cfg.Pipeline.InstanceID != "infergate-0" {
		t.Errorf("pipeline.instance_id %q: want the pod name (static membership, stable per pod)", cfg.Pipeline.InstanceID)
	}
	if cfg.Broker.Mode != appliance.BrokerExternal {
		t.Errorf("broker.mode %q: the manifests are for attached mode (external)", cfg.Broker.Mode)
	}

	// Data dir on the volume claim, the HTTP port on the probes and the scrape annotation.
	mounts := map[string]string{}
	for _, m := range get(ctr, "volumeMounts").([]any) {
		mounts[str(m, "mountPath")] = str(m, "name")
	}
	if claim := str(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name"); mounts[cfg.DataDir] != claim || claim == "" {
		t.Errorf("data_dir %s is not on the volume claim %q (mounts %v)", cfg.DataDir, claim, mounts)
	}
	_, port, _ := strings.Cut(cfg.HTTP.Listen, ":")
	if str(ctr, "ports", 0, "containerPort") != port || str(ctr, "ports", 0, "name") != "http" {
		t.Errorf("containerPort %s (%s), want %s named http (http.listen %s)", str(ctr, "ports", 0, "containerPort"), str(ctr, "ports", 0, "name"), port, cfg.HTTP.Listen)
	}
	for probe, path := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if p := str(ctr, probe, "httpGet", "path"); p != path || str(ctr, probe, "httpGet", "port") != "http" {
			t.Errorf("%s: %s on port %s, want %s on http", probe, p, str(ctr, probe, "httpGet", "port"), path)
		}
	}
	ann := get(sts, "spec", "template", "metadata", "annotations")
	if str(ann, "prometheus.io/scrape") != "true" || str(ann, "prometheus.io/port") != port || str(ann, "prometheus.io/path") != "/metrics" {
		t.Errorf("scrape annotations %v, want scrape true, port %s, path /metrics", ann, port)
	}
	// A drain may take pipeline.shutdown_timeout; Kubernetes must not kill it sooner.
	grace, _ := strconv.Atoi(str(sts, "spec", "template", "spec", "terminationGracePeriodSeconds"))
	if grace <= int(cfg.Pipeline.ShutdownTimeout.Seconds()) {
		t.Errorf("terminationGracePeriodSeconds %d is not above pipeline.shutdown_timeout %s", grace, cfg.Pipeline.ShutdownTimeout)
	}
	if u := str(sts, "spec", "template", "spec", "securityContext", "runAsUser"); u == "" || u == "0" || str(sts, "spec", "template", "spec", "securityContext", "runAsNonRoot") != "true" {
		t.Errorf("pods must run as non-root (runAsUser %q)", u)
	}

	// Selectors: the PDB and the Service select the StatefulSet's pods.
	labels := get(sts, "spec", "template", "metadata", "labels").(map[string]any)
	for what, sel := range map[string]any{
		"StatefulSet selector": get(sts, "spec", "selector", "matchLabels"),
		"PodDisruptionBudget":  get(pdb, "spec", "selector", "matchLabels"),
		"Service":              get(svc, "spec", "selector"),
	} {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range m {
			if labels[k] != v {
				t.Errorf("%s selector %s=%v does not match the pod labels %v", what, k, v, labels)
			}
		}
	}
	if str(sts, "spec", "serviceName") != str(svc, "metadata", "name") || str(svc, "spec", "clusterIP") != "None" {
		t.Errorf("serviceName %q must name the headless Service %q", str(sts, "spec", "serviceName"), str(svc, "metadata", "name"))
	}

	// The ScaledObject scales this StatefulSet on this group's lag, never past the partitions.
	so := byKind(kubeDocs(t, manifests[1]), "ScaledObject")
	if so == nil {
		t.Fatalf("%s has no ScaledObject", manifests[1])
	}
	if str(so, "spec", "scaleTargetRef", "kind") != "StatefulSet" || str(so, "spec", "scaleTargetRef", "name") != str(sts, "metadata", "name") {
		t.Errorf("scaleTargetRef %v does not name the StatefulSet", get(so, "spec", "scaleTargetRef"))
	}
	trig := get(so, "spec", "triggers", 0)
	if str(trig, "type") != "kafka" {
		t.Fatalf("trigger type %q, want kafka", str(trig, "type"))
	}
	md := get(trig, "metadata")
	if str(md, "consumerGroup") != cfg.Pipeline.Group || str(md, "topic") != cfg.Pipeline.RequestsTopic {
		t.Errorf("trigger on group %q topic %q, want the pipeline's %q and %q", str(md, "consumerGroup"), str(md, "topic"), cfg.Pipeline.Group, cfg.Pipeline.RequestsTopic)
	}
	if str(md, "bootstrapServers") != strings.Join(cfg.Broker.Brokers, ",") {
		t.Errorf("bootstrapServers %q, want broker.brokers %q", str(md, "bootstrapServers"), strings.Join(cfg.Broker.Brokers, ","))
	}
	if max, _ := strconv.Atoi(str(so, "spec", "maxReplicaCount")); max < 1 || max > cfg.Topics.Partitions {
		t.Errorf("maxReplicaCount %d: want 1..topics.partitions (%d); more instances than partitions idle", max, cfg.Topics.Partitions)
	}
	if min, _ := strconv.Atoi(str(so, "spec", "minReplicaCount")); min < 1 {
		t.Errorf("minReplicaCount %d: scaling to zero leaves no dashboard or admin API", min)
	}
	if lt, err := strconv.Atoi(str(md, "lagThreshold")); err != nil || lt <= 0 {
		t.Errorf("lagThreshold %q: want a positive number", str(md, "lagThreshold"))
	}
}
