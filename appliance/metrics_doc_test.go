package appliance

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// documentedMetrics reads docs/dashboard.md's "## Metrics" table: each
// `infergate_name{label,…}` in its first column, with its label names.
func documentedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "dashboard.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n## Metrics\n")
	if i < 0 {
		t.Fatal(`docs/dashboard.md has no "## Metrics" section`)
	}
	doc = doc[i+1:]
	if j := strings.Index(doc[3:], "\n## "); j >= 0 {
		doc = doc[:j+3]
	}
	out := map[string][]string{}
	name := regexp.MustCompile("`(infergate_[a-z_]+)(?:\\{([a-z_,]*)\\})?`")
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, " | ", 2)[0]
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			var labels []string
			if m[2] != "" {
				labels = strings.Split(m[2], ",")
			}
			sort.Strings(labels)
			out[m[1]] = labels
		}
	}
	if len(out) < 15 {
		t.Fatalf("read %d metrics from docs/dashboard.md's table; did its format change?", len(out))
	}
	return out
}

// TestMetricsTableIsWhatIsServed: every infergate_* series a running
// appliance serves on /metrics (after a result and a dead letter) is in
// docs/dashboard.md's metrics table with the label names it has, and every
// metric the table names exists in the code — so the table, the alert rules'
// reader's reference, cannot drift from the labels, and a new metric is
// documented when it is added.
func TestMetricsTableIsWhatIsServed(t *testing.T) {
	doc := documentedMetrics(t)
	c := testConfig(t)
	a := start(t, c)
	cl := producer(t, a)
	produce(t, cl,
		&kgo.Record{Topic: c.Pipeline.RequestsTopic, Value: []byte(`{"request_id":"m-1","features":[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]}`)},
		&kgo.Record{Topic: c.Pipeline.RequestsTopic, Value: []byte(`{"request_id":"m-2","features":[1]}`)})

	var served map[string][]string
	testutil.Eventually(t, time.Minute, func() error {
		resp, err := http.Get(a.WebURL() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			return err
		}
		served = map[string][]string{}
		for name, f := range fams {
			if !strings.HasPrefix(name, "infergate_") {
				continue
			}
			set := map[string]bool{}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					set[l.GetName()] = true
				}
			}
			var labels []string
			for l := range set {
				labels = append(labels, l)
			}
			sort.Strings(labels)
			served[name] = labels
		}
		for _, want := range []string{"infergate_results_total", "infergate_dlq_records_total"} {
			if _, ok := served[want]; !ok {
				return fmt.Errorf("%s not served yet", want)
			}
		}
		return nil
	})

	for name, labels := range served {
		want, ok := doc[name]
		switch {
		case !ok:
			t.Errorf("/metrics serves %s{%s}, which docs/dashboard.md's metrics table does not list", name, strings.Join(labels, ","))
		case strings.Join(want, ",") != strings.Join(labels, ","):
			t.Errorf("%s: the table says labels {%s}, /metrics has {%s}", name, strings.Join(want, ","), strings.Join(labels, ","))
		}
	}

	// The rest of the table (ingress, sidecar, exactly-once, rollout
	// series, not served in this configuration) names metrics the code
	// defines.
	var src strings.Builder
	root := ".."
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range doc {
		if _, ok := served[name]; !ok && !strings.Contains(src.String(), `"`+name+`"`) {
			t.Errorf("docs/dashboard.md's metrics table lists %s, which no code defines", name)
		}
	}
}
