package appliance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserRollout drives a rollout from the dashboard in headless
// Chromium: roll the model back, start a shadow, read its report (the
// differing requests listed), capture the requests as a dataset and replay
// it, promote, start a split, move it by hand to 30%, and abort it.
func TestBrowserRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := webtest.NewBrowser(t)
	c := testConfig(t)
	writeFeatureVersion(t, c, 1, false)
	writeFeatureVersion(t, c, 2, true)
	a := start(t, c)
	base := a.WebURL()
	webtest.Login(t, ctx, base, a.AdminToken())
	webtest.Go(t, ctx, base, "models")
	click := func(sel string) {
		t.Helper()
		webtest.Eval[bool](t, ctx, `(document.querySelector(`+fmt.Sprintf("%q", sel)+`).click(), true)`)
	}
	click("#model-rollback")
	webtest.WaitJS(t, ctx, "v1 serving", `[...document.querySelectorAll('#models-table tr[data-version="1"] .badge')].some(b => b.textContent === 'serving')`)

	click("#rollout-start") // shadow of the highest version, 2
	webtest.WaitJS(t, ctx, "the shadow runs", `document.querySelector('#rollout-status').textContent.includes('running shadow: v1 → v2')`)
	cl := producer(t, a)
	var recs []*kgo.Record
	for i := range 40 {
		f := make([]float32, 16)
		f[0] = 0.5
		if i%4 == 0 {
			f[0] = -1
		}
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "dev-%d", i), Value: requestValue(fmt.Sprintf("b-%d", i), f)})
	}
	produce(t, cl, recs...)
	webtest.WaitJS(t, ctx, "the report lists the differing requests", `document.querySelectorAll('#rollout-top tbody tr').length > 0 &&
		document.querySelector('#rollout-summary').textContent.includes('Compared 40 requests')`)
	if s := webtest.Text(t, ctx, "#rollout-summary"); !strings.Contains(s, "agreement 75%") {
		t.Errorf("report summary %q, want agreement 75%%", s)
	}
	// Capture the 40 requests as a dataset and replay it: the same 25% differ.
	webtest.Eval[bool](t, ctx, `(document.querySelector('#capture-name').value = 'b40', document.querySelector('#capture-last').value = '40', true)`)
	click("#capture-submit")
	webtest.WaitJS(t, ctx, "the dataset is listed", `[...document.querySelectorAll('#datasets-table tbody tr')].some(r => r.dataset.name === 'b40' && r.textContent.includes('40'))`)
	webtest.Eval[bool](t, ctx, `(document.querySelector('#replay-dataset').value = 'b40', document.querySelector('#replay-candidate').value = '2', document.querySelector('#replay-stable').value = '1', true)`)
	click("#replay-submit")
	webtest.WaitJS(t, ctx, "the replay report", `document.querySelector('#replay-summary') !== null &&
		document.querySelector('#replay-summary').textContent.includes('Compared 40 requests') && document.querySelectorAll('#replay-top tbody tr').length > 0`)
	if s := webtest.Text(t, ctx, "#replay-summary"); !strings.Contains(s, "agreement 75%") {
		t.Errorf("replay summary %q, want agreement 75%%", s)
	}
	if s := webtest.Text(t, ctx, "#replay-meta"); !strings.Contains(s, "40 of 40 records scored") {
		t.Errorf("replay line %q", s)
	}

	click("#rollout-promote")
	webtest.WaitJS(t, ctx, "promoted", `document.querySelector('#rollout-status').textContent.includes('promoted')`)
	webtest.WaitJS(t, ctx, "v2 serving", `[...document.querySelectorAll('#models-table tr[data-version="2"] .badge')].some(b => b.textContent === 'serving')`)

	webtest.Eval[bool](t, ctx, `(document.querySelector('#rollout-candidate').value = '1', document.querySelector('#rollout-mode').value = 'split', true)`)
	click("#rollout-start")
	webtest.WaitJS(t, ctx, "the split runs", `document.querySelector('#rollout-status').textContent.includes('running split: v2 → v1')`)
	// Moved by hand: the plan stops at the share typed in.
	webtest.Eval[bool](t, ctx, `(document.querySelector('#rollout-percent').value = '30', true)`)
	click("#rollout-set-percent")
	webtest.WaitJS(t, ctx, "the split at 30%", `document.querySelector('#rollout-status').textContent.includes('split: v2 → v1, 30% of keys on the candidate')`)
	click("#rollout-abort")
	webtest.WaitJS(t, ctx, "aborted", `document.querySelector('#rollout-status').textContent.includes('aborted from the dashboard')`)
}
