package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/reconciler"
)

// Defaults of Options.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultQueueSize     = 100
	DefaultMaxAttempts   = 4
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
	DefaultSource        = "sluice.dev/sluice"
	// dedupSize bounds the identities remembered: far more than the
	// transitions that can be in flight.
	dedupSize = 4096
)

// Results of sluice_notifications_total.
const (
	ResultSent    = "sent"    // the service accepted the message
	ResultFailed  = "failed"  // refused, or still failing after the last attempt
	ResultDropped = "dropped" // the channel's queue was full, or Sluice was stopping
)

// Options tune a Notifier.
type Options struct {
	// CommitURL links a commit: "{commit}" is replaced by its hash
	// ("https://git.example.com/platform/releases/commit/{commit}"). Empty:
	// messages name the commit without a link.
	CommitURL string
	// Source is the CloudEvents source (DefaultSource): a URI-reference
	// naming this Sluice, such as its repository (see Source).
	Source string
	// Annotations returns a release's metadata.annotations, for
	// AnnotationChannels and AnnotationEvents; nil, or a nil map, uses the
	// configuration alone. It is called inside Transition: it must be
	// quick and safe for concurrent use.
	Annotations func(release string) map[string]string
	// Registerer gets sluice_notifications_total; nil registers nothing.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Client sends the requests (default: one that follows no redirects,
	// so a body never goes to a host the Secret did not name).
	Client *http.Client
	// Timeout bounds one request (DefaultTimeout).
	Timeout time.Duration
	// QueueSize is each channel's queue (DefaultQueueSize).
	QueueSize int
	// MaxAttempts bounds the posts of one message (DefaultMaxAttempts).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between attempts, doubling
	// from MinBackoff, unless the service says how long in Retry-After.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After honoured; a longer one
	// fails the message (DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
	// UserAgent of the requests (default "sluice").
	UserAgent string

	// Tests set these: the clock, and the wait between attempts.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// Notifier sends notifications of release transitions. It implements
// reconciler.Observer; Close stops it.
type Notifier struct {
	reconciler.NopObserver
	opts     Options
	log      *slog.Logger
	channels []*channel
	byName   map[string]*channel
	total    *prometheus.CounterVec
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error

	mu     sync.RWMutex // guards closed and the queues' closing
	closed bool
	seen   *dedup
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ reconciler.Observer = (*Notifier)(nil)

// channel is a configured channel with its queue and worker.
type channel struct {
	spec  *channelSpec
	queue chan *message
}

// Open reads the configuration file and starts a Notifier.
func Open(file string, opts Options) (*Notifier, error) {
	cfg, err := LoadConfig(file)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts)
}

// New starts a Notifier: one worker per channel, until Close.
func New(cfg Config, opts Options) (*Notifier, error) {
	specs, err := compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("notifications config: %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.Source == "" {
		opts.Source = DefaultSource
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.sleep == nil {
		opts.sleep = sleepCtx
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "sluice"
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.CommitURL != "" && !strings.Contains(opts.CommitURL, "{commit}") {
		return nil, fmt.Errorf("commit URL %q has no {commit}", opts.CommitURL)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_notifications_total",
		Help: "Notifications of release transitions, by channel and result (sent, failed or dropped).",
	}, []string{"channel", "result"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(total); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register notification metrics: %w", err)
			}
			total = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		opts: opts, log: log, total: total, now: opts.now, sleep: opts.sleep,
		byName: map[string]*channel{}, seen: newDedup(dedupSize), cancel: cancel,
	}
	for _, s := range specs {
		c := &channel{spec: s, queue: make(chan *message, opts.QueueSize)}
		n.channels = append(n.channels, c)
		n.byName[s.Name] = c
		// Every series exists from the start, so rate() and alerts see 0.
		for _, r := range []string{ResultSent, ResultFailed, ResultDropped} {
			total.WithLabelValues(s.Name, r)
		}
	}
	for _, c := range n.channels {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.work(ctx, c)
		}()
	}
	return n, nil
}

// Transition implements reconciler.Observer: it picks the channels that
// want the transition and queues a message on each, without waiting.
func (n *Notifier) Transition(_ context.Context, t reconciler.Transition) {
	e, ok := EventOf(t.Action)
	if !ok {
		return
	}
	targets := n.route(t.Release, e)
	if len(targets) == 0 {
		return
	}
	m := newMessage(t, e, n.opts.CommitURL, n.now())
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		for _, c := range targets {
			n.drop(c, m, "Sluice is stopping")
		}
		return
	}
	// The reconciler reports each pushed commit once; this guards against
	// a repeat all the same, so a channel never shows a transition twice.
	if !n.seen.add(m.ID) {
		n.log.Debug("notification already sent", "release", m.Release, "commit", m.ShortCommit())
		return
	}
	for _, c := range targets {
		select {
		case c.queue <- m:
		default:
			n.drop(c, m, "queue full")
		}
	}
}

func (n *Notifier) drop(c *channel, m *message, why string) {
	n.total.WithLabelValues(c.spec.Name, ResultDropped).Inc()
	n.log.Warn("notification dropped: "+why, "channel", c.spec.Name, "release", m.Release, "event", m.Event, "commit", m.ShortCommit())
}

// route returns the channels that get event e of release.
func (n *Notifier) route(release string, e Event) []*channel {
	var ann map[string]string
	if n.opts.Annotations != nil {
		ann = n.opts.Annotations(release)
	}
	named := map[string]bool{}
	for _, name := range splitList(ann[AnnotationChannels]) {
		if n.byName[name] == nil {
			n.log.Warn("a release names a notification channel that is not configured", "release", release, "channel", name, "annotation", AnnotationChannels)
			continue
		}
		named[name] = true
	}
	var relEvents map[Event]bool
	if v, ok := ann[AnnotationEvents]; ok {
		var err error
		if relEvents, err = parseEvents(splitList(v)); err != nil {
			// A typo in an annotation narrows nothing: better a message
			// too many than a rollback nobody hears of.
			n.log.Warn("ignoring a release's notification events", "release", release, "annotation", AnnotationEvents, "err", err)
			relEvents = nil
		}
	}
	var out []*channel
	for _, c := range n.channels {
		byAnnotation := named[c.spec.Name]
		if !byAnnotation && !c.spec.selects(release) {
			continue
		}
		want := c.spec.events[e]
		if relEvents != nil {
			if byAnnotation {
				want = relEvents[e]
			} else {
				want = want && relEvents[e]
			}
		}
		if want {
			out = append(out, c)
		}
	}
	return out
}

// Close stops taking messages and waits, until ctx is done, for the queued
// ones to be sent; then it abandons the rest.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		for _, c := range n.channels {
			close(c.queue)
		}
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("notifications not all sent: %w", ctx.Err())
	}
}

// work sends a channel's messages one at a time, in order.
func (n *Notifier) work(ctx context.Context, c *channel) {
	for m := range c.queue {
		if ctx.Err() != nil {
			n.drop(c, m, "Sluice is stopping")
			continue
		}
		n.deliver(ctx, c, m)
	}
}

// Source is a CloudEvents source for a Git remote: its URL without
// credentials, query or fragment (scp-like "git@host:path" becomes
// "ssh://host/path"), or DefaultSource when it cannot be read.
func Source(gitURL string) string {
	if gitURL == "" {
		return DefaultSource
	}
	if !strings.Contains(gitURL, "://") {
		// scp-like syntax: [user@]host:path
		if at := strings.LastIndex(gitURL, "@"); at >= 0 {
			gitURL = gitURL[at+1:]
		}
		host, p, ok := strings.Cut(gitURL, ":")
		if !ok || host == "" {
			return DefaultSource
		}
		gitURL = "ssh://" + host + "/" + strings.TrimPrefix(p, "/")
	}
	u, err := url.Parse(gitURL)
	if err != nil || u.Host == "" {
		return DefaultSource
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// dedup remembers the last identities seen, in a bounded set.
type dedup struct {
	mu   sync.Mutex
	set  map[string]bool
	ring []string
	next int
}

func newDedup(n int) *dedup {
	return &dedup{set: make(map[string]bool, n), ring: make([]string, n)}
}

// add records id and reports whether it is new.
func (d *dedup) add(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.set[id] {
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.set[id] = true
	return true
}
