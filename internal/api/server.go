package api

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/config"
)

// Prefix is the path every authenticated route is under.
const Prefix = "/api/v1"

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultTimeout      = 30 * time.Second
)

// Options configure the API server. Only Tokens and Routes have no
// default.
type Options struct {
	// Tokens are the accepted bearer tokens (config api.tokens). Token
	// files are read once, by New.
	Tokens []config.Token
	// Routes are served under /api/v1, each for its Role and above.
	Routes []Route
	// Registry receives the API's metrics and is served on /metrics. Nil:
	// a registry of the server's own.
	Registry *prometheus.Registry
	// Health reports readiness for /readyz (nil: always ready). Its error
	// text is shown on that open endpoint: keep secrets out of it.
	Health func() error
	Log    zerolog.Logger
	// RateLimit applies per token (zero: DefaultRateLimit). Refused
	// requests get 429 with Retry-After.
	RateLimit RateLimit
	// MaxBodyBytes is the largest request body (default 64 KiB); larger
	// ones get 413.
	MaxBodyBytes int64
	// Timeout is the deadline of each /api/v1 request's context (default
	// 30s). Handlers must honour their request's context: one that returns
	// without answering after the deadline gets 503 written for it (and
	// the http.Server's WriteTimeout cuts one that does not return).
	Timeout time.Duration
	// TLS, when set, makes Serve speak HTTPS only.
	TLS TLS
	// Now is the rate limiter's clock (default time.Now).
	Now func() time.Time
}

// TLS is a server certificate and its key, PEM files.
type TLS struct {
	CertFile string
	KeyFile  string
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Server is the HTTP API: an http.Handler, and Serve to run it.
type Server struct {
	opts    Options
	log     zerolog.Logger
	tokens  tokenSet
	limiter *limiter
	metrics *metrics
	api     *http.ServeMux    // routes, and a catch-all answering 404 or 405
	paths   *http.ServeMux    // the routes' paths, any method: 405 or 404
	allow   map[string]string // path pattern → its methods, for Allow
	promh   http.Handler      // /metrics
	tlsConf *tls.Config       // nil: plain HTTP
	now     func() time.Time  // rate limiter clock
}

// New checks the options, reads the tokens and returns the server.
func New(o Options) (*Server, error) {
	var errs []error
	tokens, warnings, err := loadTokens(o.Tokens)
	if err != nil {
		errs = append(errs, err)
	}
	if o.RateLimit == (RateLimit{}) {
		o.RateLimit = DefaultRateLimit
	}
	if o.RateLimit.PerSecond <= 0 || o.RateLimit.Burst < 1 {
		errs = append(errs, fmt.Errorf("api rate limit: per_second (%g) and burst (%d) must be positive", o.RateLimit.PerSecond, o.RateLimit.Burst))
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("api max body bytes %d: must be positive", o.MaxBodyBytes))
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("api timeout %s: must be positive", o.Timeout))
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		opts: o, log: o.Log, tokens: tokens, limiter: newLimiter(o.RateLimit),
		api: http.NewServeMux(), paths: http.NewServeMux(), allow: map[string]string{},
		promh: promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second}),
		now:   o.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.TLS.Enabled() {
		if o.TLS.CertFile == "" || o.TLS.KeyFile == "" {
			errs = append(errs, errors.New("api tls: cert and key go together"))
		} else if cert, err := tls.LoadX509KeyPair(o.TLS.CertFile, o.TLS.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("api tls: %w", err))
		} else {
			s.tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		}
	}
	for _, rt := range o.Routes {
		if err := s.handle(rt); err != nil {
			errs = append(errs, err)
		}
	}
	s.api.HandleFunc(Prefix+"/", s.unmatched)
	s.api.HandleFunc(Prefix, s.unmatched)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.metrics, err = newMetrics(o.Registry); err != nil {
		return nil, err
	}
	for _, w := range warnings {
		s.log.Warn().Msg(w)
	}
	if len(tokens) == 0 {
		s.log.Warn().Msg("api: no tokens configured: every /api/v1 request will be refused (see docs/api.md)")
	}
	return s, nil
}

// handle registers one route.
func (s *Server) handle(rt Route) (err error) {
	at := strings.TrimSpace(rt.Method + " " + rt.Path)
	switch {
	case rt.Handler == nil:
		return fmt.Errorf("api route %s: no handler", at)
	case rt.Role < RoleViewer || rt.Role > RoleAdmin:
		return fmt.Errorf("api route %s: role %d is not viewer, analyst or admin", at, rt.Role)
	case !strings.HasPrefix(rt.Path, "/"):
		return fmt.Errorf("api route %s: the path must start with '/'", at)
	case strings.ContainsAny(rt.Method, " \t/"):
		return fmt.Errorf("api route %s: bad method", at)
	}
	path := Prefix + rt.Path
	pattern := strings.TrimSpace(rt.Method + " " + path)
	defer func() {
		if p := recover(); p != nil { // ServeMux panics on conflicting patterns
			err = fmt.Errorf("api route %s: %v", at, p)
		}
	}()
	s.api.Handle(pattern, s.wrap(rt, pattern))
	if _, ok := s.allow[path]; !ok {
		s.handlePath(path)
	}
	m := rt.Method
	if m == "" {
		m = "*"
	} else if m == http.MethodGet {
		m = "GET, HEAD"
	}
	if s.allow[path] == "" {
		s.allow[path] = m
	} else {
		s.allow[path] += ", " + m
	}
	return nil
}

// handlePath registers a route's path for telling 405 from 404. Paths
// that differ only in wildcard names ("/x/{a}" for GET, "/x/{b}" for POST)
// conflict there; the later one is then answered 404, not 405.
func (s *Server) handlePath(path string) {
	defer func() { _ = recover() }()
	s.paths.Handle(path, http.NotFoundHandler())
}

// reqInfo is what the access log learns of a request as it goes.
type reqInfo struct {
	id     string
	route  string // the pattern matched (metrics label, log)
	caller Caller
	authed bool
	// matched: a route took the request, so its path is one the route
	// expects (an unmatched path is not logged: it may be anything).
	matched bool
	quiet   bool // health and metrics: logged at debug
}

type infoKey struct{}

// RequestID returns the id of the request ctx belongs to, as sent in the
// X-Request-Id response header and logged ("" outside the API).
func RequestID(ctx context.Context) string {
	if info, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return info.id
	}
	return ""
}

// wrap checks the caller's role, then runs the route's handler.
func (s *Server) wrap(rt Route, pattern string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, _ := r.Context().Value(infoKey{}).(*reqInfo)
		if info != nil {
			info.route, info.matched = pattern, true
		}
		c, _ := CallerFrom(r.Context())
		if c.Role < rt.Role {
			s.metrics.authFailures.WithLabelValues(authRole).Inc()
			Error(w, http.StatusForbidden, fmt.Sprintf("forbidden: this needs the %s role, the token has %s", rt.Role, c.Role))
			return
		}
		rt.Handler(w, r)
	}
}

// unmatched answers /api/v1 requests that match no route: 405 when the
// path exists with other methods, else 404.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.paths.Handler(r); pattern != "" {
		if allow := s.allow[pattern]; allow != "*" {
			w.Header().Set("Allow", allow)
		}
		Error(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed here", r.Method))
		return
	}
	Error(w, http.StatusNotFound, "no such endpoint")
}

// ServeHTTP serves /healthz, /readyz and /metrics openly and everything
// under /api/v1 to authenticated callers, logging one line per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{id: newRequestID(), route: "unmatched"}
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set("X-Request-Id", info.id)
	defer func() {
		p := recover()
		if p == http.ErrAbortHandler { // compared as net/http does
			// the handler aborts the response on purpose
			if !sw.wrote {
				sw.status = 499
			}
			s.finish(sw, r, info, start)
			panic(p)
		}
		if p != nil {
			s.metrics.panics.Inc()
			s.log.Error().Str("request_id", info.id).Str("route", info.route).Str("panic", fmt.Sprint(p)).
				Bytes("stack", debug.Stack()).Msg("api handler panicked")
			if sw.wrote {
				// Half a response was sent: abort the connection so the
				// client does not take it for a whole one.
				sw.status = http.StatusInternalServerError
				s.finish(sw, r, info, start)
				panic(http.ErrAbortHandler)
			}
			Error(sw, http.StatusInternalServerError, "internal error (request id "+info.id+")")
		}
		s.finish(sw, r, info, start)
	}()
	switch p := r.URL.Path; {
	case p == "/healthz" || p == "/readyz" || p == "/metrics":
		info.route, info.quiet = p, true
		s.serveOpen(sw, r, p)
	case p == Prefix || strings.HasPrefix(p, Prefix+"/"):
		s.serveAPI(sw, r, info)
	default:
		Error(sw, http.StatusNotFound, "no such endpoint")
	}
}

func (s *Server) serveOpen(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		Error(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed here", r.Method))
		return
	}
	switch path {
	case "/metrics":
		s.promh.ServeHTTP(w, r)
	case "/readyz":
		if s.opts.Health != nil {
			if err := s.opts.Health(); err != nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %s\n", err)
				return
			}
		}
		fallthrough
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}
}

// serveAPI authenticates, rate-limits, bounds the body and the time, and
// hands the request to the routes.
func (s *Server) serveAPI(w *statusWriter, r *http.Request, info *reqInfo) {
	w.Header().Set("Cache-Control", "no-store")
	caller, reason := s.authenticate(r)
	// Handlers never see the token.
	r.Header.Del("Authorization")
	if reason != "" {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		challenge := `Bearer realm="tripline"`
		msg := "missing bearer token: send Authorization: Bearer <token>"
		switch reason {
		case authMalformed:
			challenge += `, error="invalid_request"`
			msg = "malformed Authorization header: want Bearer <token>"
		case authInvalid:
			challenge += `, error="invalid_token"`
			msg = "invalid token"
		}
		w.Header().Set("WWW-Authenticate", challenge)
		Error(w, http.StatusUnauthorized, msg)
		return
	}
	info.caller, info.authed = caller, true
	if ok, wait := s.limiter.allow(caller.Name, s.now()); !ok {
		s.metrics.rateLimited.WithLabelValues(caller.Name).Inc()
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		Error(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit of %g requests a second exceeded: retry in %ds", s.opts.RateLimit.PerSecond, secs))
		return
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", s.opts.MaxBodyBytes))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	ctx, cancel := context.WithTimeout(WithCaller(r.Context(), caller), s.opts.Timeout)
	defer cancel()
	ctx = context.WithValue(ctx, infoKey{}, info)
	s.api.ServeHTTP(w, r.WithContext(ctx))
	if !w.wrote {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			Error(w, http.StatusServiceUnavailable, fmt.Sprintf("request timed out after %s", s.opts.Timeout))
		case r.Context().Err() != nil:
			w.status = 499 // the client went away: nothing to answer
		}
	}
}

// authenticate returns the caller of r, or why it has none.
func (s *Server) authenticate(r *http.Request) (Caller, string) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 || (len(h) == 1 && h[0] == "") {
		return Caller{}, authMissing
	}
	if len(h) > 1 {
		return Caller{}, authMalformed
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return Caller{}, authMalformed
	}
	c, ok := s.tokens.lookup(tok)
	if !ok {
		return Caller{}, authInvalid
	}
	return c, ""
}

// finish counts the request and writes its access log line: never the
// token, the Authorization header or the query string, and the path only
// when a route matched it.
func (s *Server) finish(w *statusWriter, r *http.Request, info *reqInfo, start time.Time) {
	d := time.Since(start)
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	s.metrics.requests.WithLabelValues(info.route, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(info.route).Observe(d.Seconds())
	var ev *zerolog.Event
	switch {
	case status >= 500:
		ev = s.log.Error()
	case info.quiet && status < 400:
		ev = s.log.Debug()
	default:
		ev = s.log.Info()
	}
	method := r.Method
	if len(method) > 16 {
		method = method[:16] + "…"
	}
	ev = ev.Str("request_id", info.id).Str("method", method).Str("route", info.route)
	if info.matched {
		path := r.URL.Path
		if len(path) > 256 {
			path = path[:256] + "…"
		}
		ev = ev.Str("path", path)
	}
	ev = ev.Int("status", status).Dur("duration", d).Int64("bytes", w.bytes).Str("remote", r.RemoteAddr)
	if info.authed {
		ev = ev.Str("caller", info.caller.Name).Str("role", info.caller.Role.String())
	}
	ev.Msg("http request")
}

// statusWriter records what was answered.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets handlers stream.
func (w *statusWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // best effort, as http.Flusher
}

// Unwrap is for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
