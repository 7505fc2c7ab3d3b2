package ingress

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRecord: whatever subject and payload a device sends, building its
// request record never panics, a record has a model or fails, a reply
// subject is a results subject or a request's own reply, and an error
// reply is JSON.
func FuzzRecord(f *testing.F) {
	f.Add("infergate.requests.demo.line1", []byte(`{"request_id":"r","features":[1]}`))
	f.Add("infergate.requests._", []byte(`{"reply_to":"infergate/results/x/line1"}`))
	f.Add("infergate.requests.", []byte(`not json`))
	f.Add("infergate.requests.m.a.b", []byte(`{"reply_to":"other/topic"}`))
	in := &Ingress{cfg: DefaultConfig(), auth: newAuthenticator(AuthConfig{Devices: []Device{{Name: "line1", Password: "p"}}}, "t")}
	f.Fuzz(func(t *testing.T, subj string, data []byte) {
		rec, err := in.record(subj, data, OriginMQTT, "")
		if err != nil {
			return
		}
		if !strings.HasPrefix(subj, RequestsPrefix) {
			t.Fatalf("subject %q accepted", subj)
		}
		if r := header(rec, HeaderReply); !strings.HasPrefix(r, ResultsPrefix) {
			t.Fatalf("reply %q of %q / %q", r, subj, data)
		}
		if !json.Valid(errorReply(data, "decode", "x")) {
			t.Fatalf("error reply of %q is not JSON", data)
		}
	})
}
