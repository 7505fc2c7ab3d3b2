package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/internal/clihelp"
)

// defaultTimeout bounds each wait of a client command: a connection, a
// metadata answer, a delivery, an admin API answer. Long enough for a loaded
// edge box, short enough that a wrong address is reported while the operator
// still looks at the terminal.
const defaultTimeout = 10 * time.Second

// clientFlags are the connection flags of produce, consume and dlq. Their
// defaults come from the appliance running on the data dir (it writes its
// addresses there, appliance.EndpointsFile), else from the same settings as
// `infergate run` (config file and INFERGATE_* environment), so the commands
// find a local appliance with no flags at all and an external cluster with
// the same TLS/SASL settings.
type clientFlags struct {
	config  string
	brokers string
	dataDir string
	timeout time.Duration
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "config `FILE` of the appliance, for broker address, TLS, SASL and topic names (default ./infergate.yaml if present)")
	fs.StringVar(&f.brokers, "brokers", "", "seed brokers `HOST:PORT,...` (default: those of the appliance running on --data-dir, else the broker settings of the config and INFERGATE_* environment, else 127.0.0.1:9092)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `DIR` of the appliance, where a running one leaves its addresses and admin token (default: the data_dir setting, ./infergate-data)")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout, "how long to wait for the broker or the admin API to answer (connecting, metadata, each delivery, each API call) before giving up with an error")
}

// settings loads the appliance settings these commands share.
func (f *clientFlags) settings(environ []string) (*appliance.Config, error) {
	if f.timeout <= 0 {
		return nil, usageErr(fmt.Errorf("--timeout must be positive, got %s", f.timeout))
	}
	var args []string
	if f.config != "" {
		args = []string{"--config", f.config}
	}
	cfg, err := appliance.Load(args, environ, io.Discard)
	if err != nil {
		return nil, usageErr(err)
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	return cfg, nil
}

// runningAppliance returns the endpoints of the appliance running on
// dataDir, nil if none runs there (no file, or one left by a process that
// is gone).
func runningAppliance(dataDir string) *appliance.Endpoints {
	ep, err := appliance.ReadEndpoints(dataDir)
	if err != nil || ep.PID <= 0 || !processAlive(ep.PID) {
		return nil
	}
	return ep
}

// target is where a broker command connects, and why there.
type target struct {
	cc  broker.ClientConfig
	cfg *appliance.Config
	// ep is the running appliance on the data dir, nil if none.
	ep *appliance.Endpoints
	// source says where cc.Brokers came from, for error messages.
	source  string
	timeout time.Duration
}

// client returns where to connect: --brokers, else the running appliance's
// brokers, else the settings.
func (f *clientFlags) client(environ []string) (*target, error) {
	cfg, err := f.settings(environ)
	if err != nil {
		return nil, err
	}
	t := &target{cfg: cfg, cc: cfg.ClientConfig(), timeout: f.timeout, ep: runningAppliance(cfg.DataDir)}
	switch {
	case f.brokers != "":
		t.cc.Brokers = nil
		for _, b := range strings.Split(f.brokers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				t.cc.Brokers = append(t.cc.Brokers, b)
			}
		}
		t.source = "--brokers"
	case t.ep != nil && len(t.ep.Brokers) > 0:
		t.cc.Brokers = t.ep.Brokers
		t.source = fmt.Sprintf("%s, written by the appliance running as PID %d", filepath.Join(cfg.DataDir, appliance.EndpointsFile), t.ep.PID)
	default:
		t.source = fmt.Sprintf("the broker settings (no appliance runs on data dir %s; pass --brokers or --data-dir)", cfg.DataDir)
	}
	if err := t.cc.Validate(); err != nil {
		return nil, usageErr(fmt.Errorf("--brokers: %w", err))
	}
	return t, nil
}

// topics are the appliance's topic names: the running appliance's, else the settings'.
func (t *target) requestsTopic() string {
	if t.ep != nil && t.ep.RequestsTopic != "" {
		return t.ep.RequestsTopic
	}
	return t.cfg.Pipeline.RequestsTopic
}

func (t *target) resultsTopic() string {
	if t.ep != nil && t.ep.ResultsTopic != "" {
		return t.ep.ResultsTopic
	}
	return t.cfg.Pipeline.ResultsTopic
}

func (t *target) defaultModel() string {
	if t.ep != nil && t.ep.DefaultModel != "" {
		return t.ep.DefaultModel
	}
	return t.cfg.Pipeline.DefaultModel
}

func (t *target) addrs() string { return strings.Join(t.cc.Brokers, ",") }

// connect makes a client and waits, at most the timeout, for a broker to
// answer and for topic to exist, so that a wrong address or a typo in
// --topic is an error naming them instead of a silent wait.
func (t *target) connect(ctx context.Context, topic string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := t.cc.Opts()
	if err != nil {
		return nil, usageErr(err)
	}
	opts = append(opts, kgo.DialTimeout(t.timeout))
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := cl.Ping(cctx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, t.unreachable("a connection and an ApiVersions answer", err)
	}
	details, err := kadm.NewClient(cl).ListTopics(cctx, topic)
	if err == nil {
		err = details[topic].Err
	}
	switch {
	case err == nil:
		return cl, nil
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		cl.Close()
		return nil, fmt.Errorf("topic %s does not exist on the broker at %s (the appliance's topics are %s, %s and %s; brokers from %s)",
			topic, t.addrs(), t.requestsTopic(), t.resultsTopic(), t.cfg.Pipeline.DLQTopic, t.source)
	default:
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, t.unreachable("the metadata of topic "+topic, err)
	}
}

// unreachable is the error of a broker that did not answer in time.
func (t *target) unreachable(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("gave up after %s (--timeout) waiting for %s from the broker at %s (address from %s)",
			t.timeout, what, t.addrs(), t.source)
	}
	return fmt.Errorf("no broker at %s (address from %s) gave %s: %w", t.addrs(), t.source, what, err)
}

// newFlagSet makes a flag set whose errors and help go to w.
func newFlagSet(name, synopsis string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() { clihelp.Usage(w, synopsis, "", fs) }
	return fs
}
