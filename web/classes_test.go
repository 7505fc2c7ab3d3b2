package web

import (
	"regexp"
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/pipeline"
)

// The dashboard's DLQ class filter offers exactly the classes a DLQ record can
// have (pipeline.Classes), in that order: the same list the CLI's --class
// accepts. A new class fails this test until web/ui/index.html offers it.
func TestDashboardClassFilterIsPipelineClasses(t *testing.T) {
	b, err := uiFS.ReadFile("ui/index.html")
	if err != nil {
		t.Fatal(err)
	}
	sel := regexp.MustCompile(`(?s)<select name="class" id="dlq-class">(.*?)</select>`).FindSubmatch(b)
	if sel == nil {
		t.Fatal(`index.html has no <select name="class" id="dlq-class">`)
	}
	var got []string
	for _, m := range regexp.MustCompile(`<option>([^<]*)</option>`).FindAllSubmatch(sel[1], -1) {
		got = append(got, string(m[1]))
	}
	if !slices.Equal(got, pipeline.Classes[:]) {
		t.Errorf("dashboard class filter offers %q, pipeline.Classes is %q", got, pipeline.Classes)
	}
}
