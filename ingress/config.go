// Package ingress owns the edge side of infergate: an embedded nats-server
// whose MQTT 3.1.1 and NATS listeners take requests from devices, a mover
// that puts them into the Kafka requests topic, and a returner that
// publishes each result (or DLQ outcome) back to the device that asked.
//
// The delivery contract (docs/ingress.md): nats-server sends an MQTT QoS 1
// PUBACK only once the PUBLISH is stored in its $MQTT_msgs JetStream stream
// (file storage under the data dir). That stream is the durable inbox: a
// durable JetStream consumer reads the request subjects from it, produces
// each message to Kafka and acknowledges it in JetStream only after Kafka
// acknowledged the produce. A crash at any point loses nothing a device was
// told was received; a crash between the Kafka ack and the JetStream ack
// produces that request again (a duplicate with the same key and payload).
package ingress

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Subject layout. MQTT topics map to NATS subjects level by level
// ("infergate/requests/demo/line-1" is "infergate.requests.demo.line-1").
const (
	// RequestsPrefix starts a request subject: RequestsPrefix + "<model>.<device>".
	RequestsPrefix = "infergate.requests."
	// ResultsPrefix starts a result subject: ResultsPrefix + "<model>.<device>".
	ResultsPrefix = "infergate.results."
	// InboxPrefix is where nats-server stores MQTT QoS 1/2 publishes, and
	// where NATS clients publish with JetStream to get the same guarantee:
	// InboxPrefix + "infergate.requests.<model>.<device>".
	InboxPrefix = "$MQTT.msgs."
	// InboxStream is nats-server's stream of MQTT messages.
	InboxStream = "$MQTT_msgs"
	// AnyModel in the model level of a request subject leaves the model to
	// the payload's "model" field or the pipeline's default model.
	AnyModel = "_"
)

// Kafka headers the ingress puts on request records; the pipeline copies
// a request's headers onto its result and DLQ records, which is how the
// returner knows where the answer goes.
const (
	HeaderOrigin = "ingress.origin" // mqtt or nats
	HeaderDevice = "ingress.device"
	HeaderReply  = "ingress.reply" // NATS subject of the answer
	HeaderModel  = "model"         // inference.HeaderModel
)

// Modes of the ingress.
const (
	// ModeEmbedded runs nats-server in this process, with its MQTT and NATS
	// listeners (the default).
	ModeEmbedded = "embedded"
	// ModeExternal attaches to an existing NATS server or cluster (with
	// JetStream, and MQTT enabled there for MQTT devices); devices connect
	// to it, and its configuration decides who may connect and what they
	// may do.
	ModeExternal = "external"
)

// ExternalConfig is how the ingress reaches an external NATS server.
type ExternalConfig struct {
	// URLs of the server or cluster: nats://host:4222, tls://host:4222.
	URLs []string
	// User and Password, or CredsFile (a NATS .creds file: user JWT and
	// nkey seed), authenticate the ingress.
	User, Password string
	CredsFile      string
	// CAFile verifies the server's certificate (default: system roots);
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
}

// Config is the ingress part of the appliance's configuration.
type Config struct {
	// Mode is ModeEmbedded or ModeExternal ("" is embedded). In external
	// mode StoreDir, ServerName, the listeners, MaxStore, SyncAlways, the
	// TLS certificate and Auth are the external server's business and must
	// be left unset (listeners are ignored).
	Mode     string
	External ExternalConfig
	// StoreDir is nats-server's JetStream store (<data dir>/nats).
	StoreDir string
	// ServerName names the embedded nats-server (MQTT needs one).
	ServerName string
	// NATSListen and MQTTListen are host:port; port 0 picks a free one.
	// NATSListen "" disables the NATS listener (the ingress itself
	// connects in-process).
	NATSListen string
	MQTTListen string
	// RequestsTopic, ResultsTopic and DLQTopic are the Kafka topics.
	RequestsTopic string
	ResultsTopic  string
	DLQTopic      string
	// Group is the consumer group that reads results and DLQ records to
	// answer devices; it must differ from the pipeline's.
	Group string
	// MaxAckPending bounds the requests read from the inbox but not yet
	// acknowledged by Kafka: past it the inbox stops delivering, its
	// stream grows on disk and, at MaxStore, devices are refused new
	// publishes instead of memory growing.
	MaxAckPending int
	// AckWait is how long a request may wait for Kafka before JetStream
	// delivers it again.
	AckWait time.Duration
	// MaxStore bounds the JetStream store in bytes (0: nats-server's
	// default, a share of the disk).
	MaxStore int64
	// SyncAlways fsyncs every JetStream write: a PUBACK then survives a
	// power loss, not only a crash of infergate.
	SyncAlways bool
	// TLSCert and TLSKey (PEM files, both or neither) make both listeners
	// TLS only: MQTT over TLS (mqtts) and NATS with TLS required.
	TLSCert string
	TLSKey  string
	// AnswerQoS is how answers reach MQTT devices. 1 (the default): as an
	// MQTT QoS 1 publish, stored in JetStream for QoS 1 subscriptions, so a
	// device with a persistent session gets the answers published while it
	// was away. 0: as a core NATS message only, delivered at QoS 0 to every
	// subscription: one JetStream store, delivery, ack and removal less per
	// answer, but an answer to a device that is not connected is dropped
	// (it stays in the results topic).
	AnswerQoS int
	// Auth decides who may connect and what they may do.
	Auth AuthConfig
}

// DefaultConfig returns the defaults of every field but StoreDir.
func DefaultConfig() Config {
	return Config{
		ServerName:    "infergate",
		NATSListen:    "127.0.0.1:4222",
		MQTTListen:    "127.0.0.1:1883",
		RequestsTopic: "inference_requests",
		ResultsTopic:  "inference_results",
		DLQTopic:      "inference_dlq",
		Group:         "infergate-ingress",
		MaxAckPending: 4096,
		AckWait:       time.Minute,
		AnswerQoS:     1,
	}
}

// external reports whether c attaches to an external NATS server.
func (c *Config) external() bool { return c.Mode == ModeExternal }

// Validate checks c. Errors name the field; the appliance names settings.
func (c *Config) Validate() error {
	switch c.Mode {
	case "", ModeEmbedded, ModeExternal:
	default:
		return fmt.Errorf("Mode %q: want %s or %s", c.Mode, ModeEmbedded, ModeExternal)
	}
	if c.external() {
		return c.validateExternal()
	}
	var errs []error
	if c.StoreDir == "" {
		errs = append(errs, errors.New("StoreDir must be set"))
	}
	if c.MQTTListen == "" && c.NATSListen == "" {
		errs = append(errs, errors.New("at least one of MQTTListen and NATSListen must be set"))
	}
	for _, l := range []struct{ name, addr string }{{"MQTTListen", c.MQTTListen}, {"NATSListen", c.NATSListen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := splitListen(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", l.name, l.addr, err))
		}
	}
	if c.RequestsTopic == "" || c.ResultsTopic == "" || c.DLQTopic == "" {
		errs = append(errs, errors.New("RequestsTopic, ResultsTopic and DLQTopic must be set"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("TLSCert and TLSKey go together: set both or neither"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("Group must be set"))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("MaxAckPending %d must be at least 1", c.MaxAckPending))
	}
	if c.AnswerQoS != 0 && c.AnswerQoS != 1 {
		errs = append(errs, fmt.Errorf("AnswerQoS %d must be 0 or 1", c.AnswerQoS))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("AckWait %s must be at least 1s", c.AckWait))
	}
	if err := c.Auth.validate(c.exposed()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) validateExternal() error {
	var errs []error
	e := c.External
	if len(e.URLs) == 0 {
		errs = append(errs, errors.New("External.URLs: external mode needs the NATS server's URL"))
	}
	if e.CredsFile != "" && (e.User != "" || e.Password != "") {
		errs = append(errs, errors.New("External.CredsFile and External.User/Password: give one or the other"))
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		errs = append(errs, errors.New("External.CertFile and External.KeyFile go together: set both or neither"))
	}
	if c.TLSCert != "" || len(c.Auth.Devices) > 0 || len(c.Auth.Observers) > 0 {
		errs = append(errs, errors.New("TLSCert and Auth configure the embedded server's listeners: in external mode TLS, device credentials and permissions are the external server's configuration"))
	}
	if c.RequestsTopic == "" || c.ResultsTopic == "" || c.DLQTopic == "" {
		errs = append(errs, errors.New("RequestsTopic, ResultsTopic and DLQTopic must be set"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("Group must be set"))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("MaxAckPending %d must be at least 1", c.MaxAckPending))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("AckWait %s must be at least 1s", c.AckWait))
	}
	if c.AnswerQoS != 0 && c.AnswerQoS != 1 {
		errs = append(errs, fmt.Errorf("AnswerQoS %d must be 0 or 1", c.AnswerQoS))
	}
	return errors.Join(errs...)
}

// CheckAuth is the part of Validate about credentials: anonymous access
// on a listener that is not loopback, and the device list.
func (c *Config) CheckAuth() error {
	if c.external() {
		return nil
	}
	return c.Auth.validate(c.exposed())
}

// exposed lists the listeners bound to anything but loopback.
func (c *Config) exposed() []string {
	var out []string
	for _, addr := range []string{c.MQTTListen, c.NATSListen} {
		if addr == "" {
			continue
		}
		host, _, err := splitListen(addr)
		if err != nil {
			continue
		}
		if !isLoopback(host) {
			out = append(out, addr)
		}
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitListen parses host:port; port 0 becomes -1, nats-server's "any".
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	if port == 0 {
		port = -1
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// ResultSubject is where the answer to a request of model from device goes.
func ResultSubject(model, device string) string {
	if device == "" {
		return ResultsPrefix + model
	}
	return ResultsPrefix + model + "." + device
}

// parseRequestSubject splits RequestsPrefix+"<model>[.<device>...]".
func parseRequestSubject(subj string) (model, device string, ok bool) {
	rest, ok := strings.CutPrefix(subj, RequestsPrefix)
	if !ok || rest == "" {
		return "", "", false
	}
	model, device, _ = strings.Cut(rest, ".")
	return model, device, model != ""
}

// TopicToSubject converts an MQTT topic to the NATS subject nats-server
// uses for it (levels separated by '.').
func TopicToSubject(topic string) string {
	return strings.ReplaceAll(strings.TrimPrefix(topic, "/"), "/", ".")
}
