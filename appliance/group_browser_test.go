package appliance

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserGroupView: three appliances attached to a three-broker kfake
// cluster (with a data dir) in one consumer group. On each one's dashboard,
// the Broker view's Consumer group card shows the three members, each with
// the partitions it owns, and the topics table names each partition's owner.
func TestBrowserGroupView(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := webtest.NewBrowser(t) // skips without chromium, before starting anything
	const partitions = 6
	cluster := testutil.Cluster(t, partitions, nil, kfake.NumBrokers(3), kfake.DataDir(t.TempDir()))
	var as []*running
	for i := range 3 {
		c := testConfig(t)
		c.Broker.Mode = BrokerExternal
		c.Broker.Brokers = cluster.ListenAddrs()
		c.Topics.Partitions = partitions
		c.Pipeline.InstanceID = fmt.Sprintf("infergate-%d", i)
		as = append(as, start(t, c))
	}
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
}
