package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"
)

// Compression codecs accepted by ClientConfig.Compression.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionLz4    = "lz4"
	CompressionZstd   = "zstd"
	CompressionSnappy = "snappy"

	// DefaultCompression is gzip because it is the only codec every common
	// Kafka client decodes without optional libraries: kafka-python and
	// KafkaJS need extra packages for lz4, zstd and snappy (Debian's
	// python3-kafka fails on lz4 batches unless python3-lz4 is installed).
	// Records stay as the producer compressed them, so the results topic
	// must be readable by whatever the user consumes it with. The cost over
	// lz4 is measured in docs/broker.md.
	DefaultCompression = CompressionGzip
)

// SASL mechanisms accepted by SASLConfig.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify disables certificate verification (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName overrides the name checked in the brokers' certificates;
	// by default each broker's host name is checked.
	ServerName string `yaml:"server_name"`
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is "" (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// ClientConfig is how every infergate client (pipeline, admin, produce and
// consume commands) connects, to the embedded broker or an external cluster.
type ClientConfig struct {
	// Brokers are the seed brokers, host:port each.
	Brokers []string   `yaml:"brokers"`
	TLS     TLSConfig  `yaml:"tls"`
	SASL    SASLConfig `yaml:"sasl"`
	// Compression of produced batches: none, gzip (default), lz4, zstd or
	// snappy.
	Compression string `yaml:"compression"`
	// Logger, if set, receives the client's logs (at info and above).
	Logger *slog.Logger `yaml:"-" json:"-"`
}

// Validate applies defaults and checks the settings. Errors name the setting.
func (c *ClientConfig) Validate() error {
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	c.Compression = strings.ToLower(c.Compression)
	c.SASL.Mechanism = strings.ToUpper(c.SASL.Mechanism)

	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("broker.brokers (--brokers): at least one seed broker host:port is needed"))
	}
	for _, b := range c.Brokers {
		if _, _, err := splitHostPort(b, true); err != nil {
			errs = append(errs, fmt.Errorf("broker.brokers (--brokers): %w", err))
		} else if h, _, _ := splitHostPort(b, true); h == "" {
			errs = append(errs, fmt.Errorf("broker.brokers (--brokers): %q has no host", b))
		}
	}
	if _, err := compressionCodec(c.Compression); err != nil {
		errs = append(errs, fmt.Errorf("broker.compression: %w", err))
	}

	t := c.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify || t.ServerName != "") {
		errs = append(errs, errors.New("broker.tls.enabled: TLS settings are given but TLS is not enabled"))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, errors.New("broker.tls.cert_file, broker.tls.key_file: give both or neither"))
	}
	for _, f := range []struct{ name, path string }{
		{"broker.tls.ca_file", t.CAFile}, {"broker.tls.cert_file", t.CertFile}, {"broker.tls.key_file", t.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}

	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			errs = append(errs, errors.New("broker.sasl.mechanism: a SASL username/password is given but no mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("broker.sasl.username: must be set for %s", c.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("broker.sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

// Opts returns the kgo options for these settings: seed brokers, TLS, SASL,
// producer compression and logging. Callers append their own options
// (consumer group, transactional id, ...).
func (c ClientConfig) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	codec, _ := compressionCodec(c.Compression)
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ProducerBatchCompression(codec),
	}
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch c.SASL.Mechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsSha512Mechanism()))
	}
	if c.Logger != nil {
		opts = append(opts, kgo.WithLogger(kslog.New(c.Logger.With("component", "kafka-client"))))
		if c.SASL.Mechanism == SASLPlain && !c.TLS.Enabled {
			c.Logger.Warn("SASL PLAIN without TLS sends the password in clear text", "setting", "broker.sasl.mechanism")
		}
	}
	return opts, nil
}

func (t TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in setting, documented as testing only
		ServerName:         t.ServerName,
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.cert_file, broker.tls.key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case CompressionNone:
		return kgo.NoCompression(), nil
	case CompressionGzip:
		return kgo.GzipCompression(), nil
	case CompressionLz4:
		return kgo.Lz4Compression(), nil
	case CompressionZstd:
		return kgo.ZstdCompression(), nil
	case CompressionSnappy:
		return kgo.SnappyCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("%q is not one of none, gzip, lz4, zstd, snappy", name)
}
