package appliance

import (
	"fmt"
	"testing"

	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserGroupView: three appliances attached to a three-broker kfake
// cluster (with a data dir) in one consumer group. On each one's dashboard,
// the Broker view's Consumer group card shows the three members, each with
// the partitions it owns, and the topics table names each partition's owner.
// Instance 0 pausing shows as paused on instance 1's and 2's dashboards.
func TestBrowserGroupView(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := webtest.NewBrowser(t) // skips without chromium, before starting anything
	const partitions = 6
	as, apis := startGroup(t, 3, partitions)
	for i, a := range as {
		base := a.WebURL()
		webtest.Login(t, ctx, base, a.AdminToken())
		webtest.Go(t, ctx, base, "broker")
		webtest.WaitJS(t, ctx, fmt.Sprintf("instance %d's dashboard shows three members owning the six partitions", i), `(() => {
			const rows = [...document.querySelectorAll('#group-members tbody tr')];
			const members = rows.map((r) => r.dataset.member).join(',');
			const parts = rows.map((r) => r.children[1].textContent.split(', ').length).reduce((a, b) => a + b, 0);
			return !document.querySelector('#group-card').hidden && members === 'infergate-0,infergate-1,infergate-2' && parts === 6 &&
				document.querySelector('#group-summary').textContent.includes('3 members');
		})()`)
		owners := webtest.Eval[int](t, ctx, `[...document.querySelectorAll('#topics [data-topic="inference_requests"] tbody tr td:nth-child(5)')].filter((td) => td.textContent.startsWith('infergate-')).length`)
		if owners != partitions {
			t.Errorf("instance %d: the topics table names the owner of %d partitions, want %d", i, owners, partitions)
		}
	}

	// Instance 0 pauses: instances 1 and 2 show it paused, with its last heartbeat; resumed,
	// it is ok again.
	apis[0].json("POST", "/api/v1/pipeline/pause", nil, 200, nil)
	for i := 1; i < 3; i++ {
		a := as[i]
		webtest.Login(t, ctx, a.WebURL(), a.AdminToken())
		webtest.Go(t, ctx, a.WebURL(), "broker")
		webtest.WaitJS(t, ctx, fmt.Sprintf("instance %d's dashboard shows infergate-0 paused", i), `(() => {
			const row = document.querySelector('#group-members tbody tr[data-member="infergate-0"]');
			return !!row && row.dataset.state === 'paused' && row.children[2].textContent.trim() === 'paused' &&
				row.children[5].textContent.includes('ago');
		})()`)
	}
	apis[0].json("POST", "/api/v1/pipeline/resume", nil, 200, nil)
	webtest.WaitJS(t, ctx, "instance 2's dashboard shows infergate-0 ok after the resume", `(() => {
		const row = document.querySelector('#group-members tbody tr[data-member="infergate-0"]');
		return !!row && row.dataset.state === 'ok';
	})()`)
}
