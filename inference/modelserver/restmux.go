package modelserver

import (
	"context"
	"net/http"
	"time"

	"github.com/infergate/infergate/inference/modelserver/rest"
)

// restMux serves the REST API and, when monitoring is on, the Prometheus
// metrics on the same port, as TF Serving does.
func (s *Server) restMux() http.Handler {
	mux := http.NewServeMux()
	var admit rest.AdmitFunc
	if s.adm != nil {
		admit = s.adm.admit
	}
	var api http.Handler = rest.NewHandler(s.restPred, s.models, s.log,
		rest.WithLimits(s.cfg.Limits.MaxRequestElements, s.cfg.Limits.TooManyElements, admit))
	if s.cfg.RESTTimeout > 0 {
		api = withTimeout(api, s.cfg.RESTTimeout)
	}
	mux.Handle("/", api)
	if s.mx != nil {
		mux.Handle(s.cfg.MonitoringPath, s.mx.handler())
	}
	return mux
}

// withTimeout gives each request a deadline (TF's rest_api_timeout_in_ms);
// the handler maps DEADLINE_EXCEEDED to 504.
func withTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
