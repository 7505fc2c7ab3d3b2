package ingress

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Reject reasons, the label of infergate_ingress_rejects_total.
const (
	// RejectCredentials: a client presented no or wrong credentials.
	RejectCredentials = "credentials"
	// RejectPermission: a client published or subscribed outside its
	// permissions (nats-server dropped the publish or refused the
	// subscription).
	RejectPermission = "permission"
	// RejectSubject: a request on a subject without a model level.
	RejectSubject = "subject"
)

// Reject is one refused connection, publish or subscription.
type Reject struct {
	At     time.Time
	Reason string // Reject*
	Client string // the client's name or address, never its secret
	Detail string
}

// rejectLog keeps the most recent rejects for the dashboard.
type rejectLog struct {
	mu   sync.Mutex
	last []Reject // oldest first
}

const rejectsKept = 20

func (l *rejectLog) add(r Reject) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = append(l.last, r)
	if len(l.last) > rejectsKept {
		l.last = append(l.last[:0], l.last[len(l.last)-rejectsKept:]...)
	}
}

// newestFirst returns a copy, the newest first.
func (l *rejectLog) newestFirst() []Reject {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Reject, len(l.last))
	for i, r := range l.last {
		out[len(l.last)-1-i] = r
	}
	return out
}

// reject records r and counts it.
func (in *Ingress) reject(r Reject) {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	in.rejects.add(r)
	in.metrics.rejects.WithLabelValues(r.Reason).Inc()
}

// permissionViolation recognises nats-server's log line for a publish or
// subscription outside a client's permissions ("<client> - Publish
// Violation - Subject ..."); nats-server reports them nowhere else.
func permissionViolation(line string) (Reject, bool) {
	i := strings.Index(line, "Publish Violation")
	if i < 0 {
		i = strings.Index(line, "Subscription Violation")
	}
	if i < 0 {
		return Reject{}, false
	}
	return Reject{Reason: RejectPermission, Client: strings.TrimSuffix(strings.TrimSpace(line[:i]), " -"), Detail: line[i:]}, true
}

// Status is what the dashboard's Ingress view shows.
type Status struct {
	// External: attached to an external NATS server at URL (then the
	// listeners and clients are unknown here: -1 clients).
	External bool
	URL      string
	// ServerVersion is the NATS server's version.
	ServerVersion string
	// MQTTAddr and NATSAddr are the listeners ("" when off).
	MQTTAddr, NATSAddr string
	TLS                bool
	// Anonymous: no device credentials are configured.
	Anonymous bool
	AnswerQoS int
	// Connected devices by protocol (the ingress's own connection is not
	// counted).
	ClientsMQTT, ClientsNATS int
	// InboxPending are durable requests in the inbox not yet delivered to
	// the mover; AckPending are delivered and wait for Kafka's ack.
	InboxPending uint64
	AckPending   int
	// Rejects are the most recent refused connections, publishes and
	// subscriptions, newest first.
	Rejects []Reject
}

// Status reports the listeners, the connected devices, the inbox and the
// recent rejects. It asks nats-server for its connections and the inbox
// consumer's state, so it costs a little: the dashboard asks every few
// seconds.
func (in *Ingress) Status(ctx context.Context) Status {
	st := Status{
		ServerVersion: server.VERSION,
		MQTTAddr:      in.MQTTAddr(),
		NATSAddr:      in.NATSAddr(),
		TLS:           in.cfg.TLSCert != "",
		Anonymous:     in.auth.anonymous,
		AnswerQoS:     in.cfg.AnswerQoS,
		Rejects:       in.rejects.newestFirst(),
	}
	if in.cfg.external() {
		st.External, st.ClientsMQTT, st.ClientsNATS = true, -1, -1
		if in.nc != nil {
			st.URL, st.ServerVersion = in.nc.ConnectedUrlRedacted(), in.nc.ConnectedServerVersion()
		}
	}
	if in.srv != nil {
		cz, err := in.srv.Connz(&server.ConnzOptions{Limit: in.srv.NumClients() + 16})
		if err == nil {
			for _, c := range cz.Conns {
				switch {
				case c.Name == internalClientName:
				case c.MQTTClient != "":
					st.ClientsMQTT++
				default:
					st.ClientsNATS++
				}
			}
		}
	}
	if in.js != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if cons, err := in.js.Consumer(ctx, InboxStream, inboxConsumer); err == nil {
			if ci, err := cons.Info(ctx); err == nil {
				st.InboxPending, st.AckPending = ci.NumPending, ci.NumAckPending
			}
		}
	}
	return st
}
