package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Dashboard is the web dashboard: an [http.Handler] serving the pages,
// actions and assets, and the sampler goroutine that records the charts'
// figures. Create it with [New] and stop it with [Close]. It is safe for
// concurrent use.
type Dashboard struct {
	rdb     redis.UniversalClient
	cfg     config
	handler http.Handler
	tmpl    *template.Template
	csrf    string // the dashboard's action token, hex
	// flashKey signs the outcome shown after an action. It is not the
	// CSRF token: every visitor gets that one in a cookie, and could sign
	// words of their own with it.
	flashKey []byte
	cop      *http.CrossOriginProtection
	hist     *history

	cancel context.CancelFunc
	done   chan struct{} // closed when the sampler has returned
	once   sync.Once

	sampleMu  sync.Mutex
	sampleErr error   // of the last sample, shown on the overview
	last      *survey // the latest survey, the sampler's or an overview's; never changed
	gen       uint64  // actions taken: a survey begun before one is not shared
}

// New returns a dashboard of the streams in rdb and starts its sampler,
// which reads every stream's figures each sample interval until [Close].
// The dashboard is read-only unless [WithActions] is given. The error
// wraps [ErrInvalidOption] for a bad option or a nil client. New does not
// talk to Redis; it never closes rdb.
func New(rdb redis.UniversalClient, opts ...Option) (*Dashboard, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	token, flashKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(token) // never fails (crypto/rand)
	_, _ = rand.Read(flashKey)
	d := &Dashboard{
		rdb: rdb, cfg: cfg, tmpl: tmpl, csrf: hex.EncodeToString(token), flashKey: flashKey,
		cop:  http.NewCrossOriginProtection(),
		hist: newHistory(cfg.ringSize), done: make(chan struct{}),
	}
	d.handler = d.routes()
	if cfg.middleware != nil {
		d.handler = cfg.middleware(d.handler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() {
		defer close(d.done)
		d.run(ctx)
	}()
	return d, nil
}

// Close stops the sampler and waits for it to return. The dashboard still
// serves requests after Close, with charts that no longer grow. Close is
// idempotent and always returns nil; it does not close the Redis client.
func (d *Dashboard) Close() error {
	d.once.Do(d.cancel)
	<-d.done
	return nil
}

// ServeHTTP serves the dashboard. Mount it under any path with
// [http.StripPrefix]; its links are relative to where it is mounted:
//
//	mux.Handle("/redstream/", http.StripPrefix("/redstream", d))
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.handler.ServeHTTP(w, r)
}

func (d *Dashboard) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", d.overview)
	mux.HandleFunc("GET /stream", d.streamPage)
	mux.HandleFunc("GET /pending", d.pendingPage)
	mux.HandleFunc("GET /deadletters", d.deadLettersPage)
	mux.HandleFunc("GET /tail", d.tailPage)
	for path, fn := range map[string]func(http.ResponseWriter, *http.Request){
		"/actions/ack":        d.ackAction,
		"/actions/deadletter": d.deadLetterAction,
		"/actions/claim":      d.claimAction,
		"/actions/replay":     d.replayAction,
		"/actions/delete":     d.deleteAction,
		"/actions/pause":      d.pauseAction,
	} {
		mux.HandleFunc("POST "+path, d.action(fn))
	}
	return secure(mux)
}

// contentSecurityPolicy allows only the dashboard's own script and style:
// no inline script, so markup slipped into a page cannot run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// secure sets the security headers of every response and gives the
// routes a path that starts with "/" whatever prefix was stripped.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if !strings.HasPrefix(r.URL.Path, "/") {
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = "/"+u.Path, ""
			r2.URL = &u
			r = &r2
		}
		next.ServeHTTP(w, r)
	})
}

// basePath returns the path the dashboard is mounted at, ending in "/":
// the request's path as sent, less the path the dashboard routes on.
func basePath(r *http.Request) string {
	orig := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && r.RequestURI != "" {
		orig = u.Path
	}
	base := "/"
	if p := r.URL.Path; strings.HasSuffix(orig, p) {
		base = strings.TrimSuffix(orig[:len(orig)-len(p)], "/") + "/"
	}
	return base
}

const csrfCookie = "redstream_csrf"

// action wraps an action handler: refused with 403 in read-only mode, when
// the browser says the request comes from another origin (Sec-Fetch-Site,
// or an Origin not the Host), or without the dashboard's token in both the
// form and the cookie. The token alone is not enough: it is the same for
// every visitor, and a sibling subdomain can set the cookie.
func (d *Dashboard) action(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.actions {
			d.fail(w, r, http.StatusForbidden, errors.New("the dashboard is read-only: actions are turned off"))
			return
		}
		if err := d.cop.Check(r); err != nil {
			d.fail(w, r, http.StatusForbidden, errors.New("refused: the request comes from another origin"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, http.StatusBadRequest, fmt.Errorf("bad form: %w", err))
			return
		}
		cookie, err := r.Cookie(csrfCookie)
		if err != nil || !d.tokenOK(r.PostForm.Get("csrf")) || !d.tokenOK(cookie.Value) {
			d.fail(w, r, http.StatusForbidden, errors.New("missing or wrong CSRF token: reload the page and try again"))
			return
		}
		// Whatever the action did, the overview reads Redis again.
		defer d.forget()
		fn(w, r)
	}
}

func (d *Dashboard) tokenOK(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(d.csrf)) == 1
}

// page is what every template gets.
type page struct {
	Base     string
	Title    string
	CSRF     string
	Actions  bool
	Refresh  int // seconds; 0: the page does not update itself
	Now      time.Time
	Flash    string // the outcome of an action
	Data     any
	Status   int
	ErrorMsg string
}

// render executes the template name with data into a buffer first, so a
// failing template never sends half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name, title string, live bool, data any) {
	p := d.newPage(r, title, data)
	if live {
		p.Refresh = int(max(1, d.cfg.refresh.Round(time.Second)/time.Second))
	}
	p.Status = status
	d.write(w, r, status, name, p)
}

func (d *Dashboard) newPage(r *http.Request, title string, data any) page {
	return page{
		Base: basePath(r), Title: clipKey(title), CSRF: d.csrf, Actions: d.cfg.actions,
		Now: time.Now(), Data: data, Flash: d.flash(r.URL.Query()),
	}
}

func (d *Dashboard) write(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var b strings.Builder
	if err := d.tmpl.ExecuteTemplate(&b, name, p); err != nil {
		// A bug of the dashboard's own: no Go error on the page.
		http.Error(w, "dashboard: the page "+name+" could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: d.csrf, Path: p.Base, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail renders an error page with status.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	p := d.newPage(r, http.StatusText(status), nil)
	p.Status, p.ErrorMsg = status, shown(err)
	d.write(w, r, status, "error", p)
}

// failErr renders err with the status its kind calls for.
func (d *Dashboard) failErr(w http.ResponseWriter, r *http.Request, err error) {
	err = notStream(err)
	d.fail(w, r, statusOf(err), err)
}

func statusOf(err error) int {
	var notPending *redstream.NotPendingError
	switch {
	case errors.Is(err, redstream.ErrNoStream), errors.Is(err, redstream.ErrNoGroup):
		return http.StatusNotFound
	case errors.Is(err, redstream.ErrInvalidID), errors.Is(err, redstream.ErrInvalidOption),
		errors.Is(err, redstream.ErrInvalidStreamName), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.As(err, &notPending), errors.Is(err, redstream.ErrNotReplayable):
		return http.StatusConflict
	case isConnErr(err), errors.Is(err, context.DeadlineExceeded), errors.As(err, new(redis.Error)):
		// Redis is down or refused: the dashboard's upstream failed.
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// errBadRequest marks a request's own mistakes: 400.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// redirect sends the browser back to a page after an action, with its
// outcome, relative to where the dashboard is mounted.
// The flash is signed with the dashboard's token, so that a link made
// elsewhere cannot put words of its own on a page.
func (d *Dashboard) redirect(w http.ResponseWriter, r *http.Request, path string, q url.Values, flash string) {
	q.Set("flash", flash)
	q.Set("sig", d.sign(flash))
	http.Redirect(w, r, basePath(r)+path+"?"+q.Encode(), http.StatusSeeOther)
}

func (d *Dashboard) sign(s string) string {
	m := hmac.New(sha256.New, d.flashKey)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// flash returns the signed outcome of an action in q, or "".
func (d *Dashboard) flash(q url.Values) string {
	f := q.Get("flash")
	if f == "" || !hmac.Equal([]byte(q.Get("sig")), []byte(d.sign(f))) {
		return ""
	}
	return f
}
