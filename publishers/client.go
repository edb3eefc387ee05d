package publishers

import (
	"net"
	"net/http"
	"time"

	"github.com/pusher/pusher-http-go/v5"
)

// ClientConfig is what NewClient needs to reach Pusher or a Pusher-compatible API.
type ClientConfig struct {
	AppID, Key, Secret string
	Cluster            string // e.g. "mt1"; ignored when Host is set
	Host               string // host:port of a Pusher-compatible API
	UseTLS             bool
	Timeout            time.Duration // per call; default 10s
	MaxConns           int           // idle connections kept per host; default 64
}

// NewClient returns a pusher-http-go client over a shared, tuned HTTP
// transport. The HTTP client is always set: pusher-http-go assigns a default
// one lazily, which races under concurrent triggers.
func NewClient(cfg ClientConfig) *pusher.Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          cfg.MaxConns,
		MaxIdleConnsPerHost:   cfg.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	c := &pusher.Client{
		AppID:      cfg.AppID,
		Key:        cfg.Key,
		Secret:     cfg.Secret,
		Secure:     cfg.UseTLS,
		HTTPClient: &http.Client{Timeout: cfg.Timeout, Transport: transport},
	}
	if cfg.Host != "" {
		c.Host = cfg.Host
	} else {
		c.Cluster = cfg.Cluster
	}
	return c
}
