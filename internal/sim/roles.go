package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tripline/tripline/pipeline"
)

// toolFlags are the attributes a gateway sets on every call of a tool.
type toolFlags uint8

const (
	untrusted  toolFlags = 1 << iota // attrs.trust=untrusted: the result is content nobody here wrote
	dataTool                         // attrs.resource_tenant=<tenant>: the tool reads or writes tenant data
	privileged                       // attrs.privileged=true
)

// dependency is a downstream system that can have an outage.
type dependency uint8

const (
	depNone dependency = iota
	depTicketing
	depCRM
	depWarehouse
	depLake
	depGit
	depWeb
	depAll // the tenant's egress or tool gateway: every tool
)

// tool is a tool as the gateway knows it.
type tool struct {
	name   string
	action pipeline.Action
	flags  toolFlags
	dep    dependency
}

// The tools of the benign populations.
var (
	// support copilot
	ticketGet      = &tool{"ticket.get", pipeline.ActionRead, untrusted | dataTool, depTicketing}
	ticketComments = &tool{"ticket.comments", pipeline.ActionRead, untrusted | dataTool, depTicketing}
	ticketDraft    = &tool{"ticket.draft_reply", pipeline.ActionWrite, dataTool, depTicketing}
	ticketUpdate   = &tool{"ticket.update", pipeline.ActionWrite, dataTool, depTicketing}
	crmLookup      = &tool{"crm.lookup", pipeline.ActionRead, dataTool, depCRM}
	crmSearch      = &tool{"crm.search", pipeline.ActionRead, dataTool, depCRM}
	crmUpdate      = &tool{"crm.update", pipeline.ActionWrite, dataTool, depCRM}
	ordersLookup   = &tool{"orders.lookup", pipeline.ActionRead, dataTool, depCRM}
	kbSearch       = &tool{"kb.search", pipeline.ActionRead, 0, depNone}
	mailSend       = &tool{"mail.send", pipeline.ActionSend, 0, depNone}
	paymentsRefund = &tool{"payments.refund", pipeline.ActionWrite, dataTool | privileged, depNone}
	translateText  = &tool{"translate.text", pipeline.ActionOther, 0, depNone} // rolled out on day 2

	// coding agent
	fsSearch    = &tool{"fs.search", pipeline.ActionRead, 0, depNone}
	fsRead      = &tool{"fs.read", pipeline.ActionRead, 0, depNone}
	fsWrite     = &tool{"fs.write", pipeline.ActionWrite, 0, depNone}
	shellExec   = &tool{"shell.exec", pipeline.ActionExecute, 0, depNone}
	httpGet     = &tool{"http.get", pipeline.ActionRead, untrusted, depWeb}
	gitCommit   = &tool{"git.commit", pipeline.ActionWrite, 0, depNone}
	gitPush     = &tool{"git.push", pipeline.ActionSend, 0, depGit}
	deployRun   = &tool{"deploy.run", pipeline.ActionExecute, 0, depNone}
	secretsRead = &tool{"secrets.read", pipeline.ActionRead, privileged, depNone}

	// data-analysis agent
	dbSchema    = &tool{"db.schema", pipeline.ActionRead, dataTool, depWarehouse}
	dbQuery     = &tool{"db.query", pipeline.ActionRead, dataTool, depWarehouse}
	s3Get       = &tool{"s3.get", pipeline.ActionRead, dataTool, depLake}
	s3Put       = &tool{"s3.put", pipeline.ActionWrite, dataTool, depLake}
	reportWrite = &tool{"report.write", pipeline.ActionWrite, dataTool, depLake}
	chartRender = &tool{"chart.render", pipeline.ActionOther, 0, depNone}
	notebookRun = &tool{"notebook.run", pipeline.ActionExecute, 0, depNone}
	slackPost   = &tool{"slack.post", pipeline.ActionSend, 0, depNone}

	// orchestrator and its sub-agents
	memoryRead  = &tool{"memory.read", pipeline.ActionRead, 0, depNone}
	planCreate  = &tool{"plan.create", pipeline.ActionOther, 0, depNone}
	agentSpawn  = &tool{"agent.spawn", pipeline.ActionExecute, 0, depNone}
	agentResult = &tool{"agent.result", pipeline.ActionRead, 0, depNone}
	docsRead    = &tool{"docs.read", pipeline.ActionRead, dataTool, depNone}
	docsWrite   = &tool{"docs.write", pipeline.ActionWrite, dataTool, depNone}
	docsComment = &tool{"docs.comment", pipeline.ActionWrite, dataTool, depNone}
	notesRead   = &tool{"notes.read", pipeline.ActionRead, 0, depNone}
	notesWrite  = &tool{"notes.write", pipeline.ActionWrite, 0, depNone}
	webSearch   = &tool{"web.search", pipeline.ActionRead, untrusted, depWeb}
	webFetch    = &tool{"web.fetch", pipeline.ActionRead, untrusted, depWeb}
	oauthToken  = &tool{"oauth.token", pipeline.ActionAuth, 0, depNone}
	waitBarrier = &tool{name: "(wait)"}  // not a call: wait for the session's sub-agents
	spawnMarker = &tool{name: "(spawn)"} // not a call: start the sub-agent named by call.res
)

// names returns the names of tools, as a task scope.
func names(tools ...*tool) []string {
	out := make([]string, len(tools))
	for i, t := range tools {
		out[i] = t.name
	}
	return out
}

var (
	supportScope       = names(ticketGet, ticketComments, ticketDraft, ticketUpdate, crmLookup, crmSearch, crmUpdate, ordersLookup, kbSearch, mailSend, paymentsRefund)
	supportScopeRolled = append(supportScope[:len(supportScope):len(supportScope)], translateText.name)
	codingScope        = names(fsSearch, fsRead, fsWrite, shellExec, httpGet, gitCommit, gitPush)
	codingDeployScope  = names(fsSearch, fsRead, fsWrite, shellExec, httpGet, gitCommit, gitPush, deployRun, secretsRead)
	nightlyScope       = names(dbQuery, s3Get, s3Put, reportWrite, slackPost)
	orchestratorScope  = names(memoryRead, planCreate, agentSpawn, agentResult, docsWrite, slackPost, mailSend)
)

// call is one tool call of a plan, before it becomes an event.
type call struct {
	gap      time.Duration // pause before it
	t        *tool
	res      string
	dest     string
	sens     string
	in, out  int64 // bytes_in, bytes_out
	records  int64
	env      string
	approval string
	outcome  string            // forced outcome; "" lets the world decide (outages, noise)
	errAttr  string            // attrs.error of a failed call
	cred     string            // the credential, when not the instance's current one
	retries  int               // retries already made of this call
	noAuth   bool              // do not refresh the credential before it
	attrs    map[string]string // instead of the tool's attributes
}

// role is a population of benign agents.
type role struct {
	name      string // support, coding, data, orchestrator
	title     string // prefix of its agents' names
	rhythm    *rhythm
	peak      float64 // sessions an hour per agent at the peak of its rhythm
	instances [2]int  // min and max instances per agent
	plan      func(p *planner)
	sub       bool // a sub-agent role of the orchestrator
}

var (
	supportRole = &role{name: "support", title: "support-copilot", rhythm: &rhythm{officeHours, 0.3}, peak: 10,
		instances: [2]int{2, 3}, plan: planSupport}
	codingRole = &role{name: "coding", title: "coding-agent", rhythm: &rhythm{devHours, 0.15}, peak: 1.6,
		instances: [2]int{1, 1}, plan: planCoding}
	dataRole = &role{name: "data", title: "data-analyst", rhythm: &rhythm{officeHours, 0.1}, peak: 1.3,
		instances: [2]int{1, 2}, plan: planDataAdHoc}
	orchestratorRole = &role{name: "orchestrator", title: "orchestrator", rhythm: &rhythm{officeHours, 0.2}, peak: 2,
		instances: [2]int{1, 2}, plan: planOrchestrator}

	// roleOrder assigns roles to agents in turn: about 35% support, 25%
	// coding, 20% data and 20% orchestrators, every role among the first
	// four agents.
	roleOrder = []*role{supportRole, codingRole, dataRole, orchestratorRole, supportRole, codingRole, supportRole,
		dataRole, orchestratorRole, supportRole, codingRole, supportRole, dataRole, orchestratorRole, supportRole,
		codingRole, supportRole, dataRole, orchestratorRole, codingRole}

	// Sub-agent roles of the orchestrator; fetcher is a sub-agent of the
	// researcher (delegation depth 2).
	researcherRole = &role{name: "researcher", sub: true, plan: planResearcher}
	writerRole     = &role{name: "writer", sub: true, plan: planWriter}
	reviewerRole   = &role{name: "reviewer", sub: true, plan: planReviewer}
	subAnalystRole = &role{name: "analyst", sub: true, plan: planSubAnalyst}
	subCoderRole   = &role{name: "coder", sub: true, plan: planSubCoder}
	fetcherRole    = &role{name: "fetcher", sub: true, plan: planFetcher}
	subRoles       = []*role{researcherRole, writerRole, reviewerRole, subAnalystRole, subCoderRole}

	topRoles = []*role{supportRole, codingRole, dataRole, orchestratorRole}
)

func subRoleByName(name string) *role {
	for _, r := range append(subRoles, fetcherRole) {
		if r.name == name {
			return r
		}
	}
	return nil
}

// agent is one agent identity: a member of a population, or a sub-agent
// identity of an orchestrator.
type agent struct {
	idx      int
	n        int // number in its role, from 1
	tenant   *tenant
	role     *role
	name     string
	id       string // SPIFFE ID
	key      uint64
	r        *rand.Rand
	busy     float64 // activity multiplier: agents of a role are not all as busy
	insts    []*instance
	parent   *agent
	depth    int
	subs     map[*role]*agent
	owners   []string // principals it usually acts for
	repos    []repo   // coding agents
	channels []string // channels it posts to
	scale    float64  // data volume multiplier of its datasets
	seq      int      // sessions started
}

// sub returns the sub-agent identity of a for role ro.
func (a *agent) sub(ro *role) *agent {
	if s := a.subs[ro]; s != nil {
		return s
	}
	key := mix(a.key, nsSub, xxhash.Sum64String(ro.name))
	s := &agent{
		idx: a.idx, tenant: a.tenant, role: ro, name: a.name + "-" + ro.name,
		id: a.id + "/sub/" + ro.name, key: key, r: newRand(key), busy: 1,
		parent: a, depth: a.depth + 1, subs: map[*role]*agent{}, owners: a.owners,
		repos: a.repos, channels: a.channels, scale: a.scale,
	}
	if a.subs == nil {
		a.subs = map[*role]*agent{}
	}
	a.subs[ro] = s
	return s
}

type repo struct {
	name, remote string
	files        int
}

var repoNames = []string{"billing", "checkout", "search", "auth", "platform", "mobile-api", "ledger", "web"}
var srcDirs = []string{"cmd", "internal/api", "internal/store", "internal/auth", "pkg/client", "pkg/model", "web/src", "scripts"}
var srcWords = []string{"handler", "service", "store", "client", "model", "util", "config", "router", "worker", "cache"}

func (rp *repo) file(i int) string {
	return "/workspace/" + rp.name + "/" + srcDirs[i%len(srcDirs)] + "/" + srcWords[(i/len(srcDirs))%len(srcWords)] + itoa(i) + ".go"
}

var channelNames = []string{"#analytics", "#data-alerts", "#exec-metrics", "#growth", "#finance-reports", "#eng-updates", "#research", "#support-leads", "#product"}
var warehouseTables = []string{"sales.orders", "sales.invoices", "crm.customers", "crm.contacts", "product.events", "product.sessions",
	"finance.ledger", "finance.payouts", "support.tickets", "marketing.campaigns", "hr.headcount", "ops.incidents"}
var docSites = []string{"pkg.go.dev", "docs.python.org", "developer.mozilla.org", "stackoverflow.com", "github.com", "kubernetes.io"}
var webSites = []string{"en.wikipedia.org", "arxiv.org", "news.ycombinator.com", "www.reuters.com", "blog.example.com", "docs.example.org",
	"www.gartner.com", "medium.com", "github.com", "www.statista.com"}
var customerDomains = []string{"gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "gmx.de", "web.de", "orange.fr"}

// planner builds the calls of one session.
type planner struct {
	s         *Sim
	r         *rand.Rand
	ag        *agent
	at        time.Duration // when the session starts
	calls     []call
	scope     []string // the task's declared tools; nil: none declared
	principal string
	median    time.Duration // think time
	sigma     float64
	nightly   bool
}

// add appends a call after a think-time pause and returns it for the
// caller to fill in (the pointer is valid until the next add).
func (p *planner) add(t *tool, res string) *call {
	return p.addAfter(think(p.r, p.median, p.sigma), t, res)
}

func (p *planner) addAfter(gap time.Duration, t *tool, res string) *call {
	p.calls = append(p.calls, call{gap: gap, t: t, res: res})
	return &p.calls[len(p.calls)-1]
}

func (c *call) read(sens string, in, records int64) *call {
	c.sens, c.in, c.records = sens, in, records
	return c
}

func (c *call) write(sens string, out int64) *call {
	c.sens, c.out = sens, out
	return c
}

func weighted(r *rand.Rand, w ...float64) int {
	total := 0.0
	for _, x := range w {
		total += x
	}
	x := r.Float64() * total
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

func sensOf(r *rand.Rand, public, internal, confidential, restricted float64) string {
	return [...]string{pipeline.SensitivityPublic, pipeline.SensitivityInternal, pipeline.SensitivityConfidential,
		pipeline.SensitivityRestricted}[weighted(r, public, internal, confidential, restricted)]
}

func clampInt(x float64, lo, hi int) int {
	if math.IsNaN(x) {
		return lo
	}
	return min(max(int(x), lo), hi)
}

// customer returns the address of a tenant's customer number k (most of
// a support copilot's mail goes to people it never wrote to).
func customer(tn *tenant, k uint64) string {
	h := mix(uint64(tn.idx), k)
	dom := customerDomains[h%uint64(len(customerDomains))]
	if (h>>8)%3 == 0 { // a business customer
		dom = lastNames[(h>>20)%uint64(len(lastNames))] + "-" + srcWords[(h>>28)%uint64(len(srcWords))] + ".com"
	}
	return person(h>>32) + itoa(int((h>>40)%100)) + "@" + dom
}

// planSupport: one ticket. Read it (untrusted customer text), look the
// customer up in the CRM (confidential), search the knowledge base, draft
// and send a reply to the customer (usually an address the agent never
// wrote to), update the CRM and the ticket. 5–30 calls, seconds apart.
func planSupport(p *planner) {
	r, tn := p.r, p.ag.tenant
	p.median, p.sigma = 5*time.Second, 0.8
	p.principal = pick(r, p.ag.owners)
	rolled := p.at >= tn.rollout
	p.scope = supportScope
	if rolled {
		p.scope = supportScopeRolled
	}
	ticket := "ticket://" + tn.name + "/" + itoa(100000+r.IntN(900000))
	cust := uint64(r.IntN(20000))
	contact := "crm://" + tn.name + "/contacts/" + itoa(int(cust))
	n := clampInt(3+lognorm(r, 9, 0.6), 5, 30)

	p.addAfter(0, ticketGet, ticket).read(sensOf(r, 0, 70, 30, 0), bytesOf(r, 4000, 0.9), 1)
	p.add(crmLookup, contact).read(pipeline.SensitivityConfidential, bytesOf(r, 3000, 0.6), 1+int64(r.IntN(3)))
	closing := 2 // draft, ticket update
	send := r.Float64() < 0.7
	if send {
		closing++
	}
	update := r.Float64() < 0.5
	if update {
		closing++
	}
	refund := r.Float64() < 0.03
	if refund {
		closing++
	}
	for len(p.calls) < n-closing {
		switch weighted(r, 45, 15, 15, 8, 10, 7) {
		case 0:
			p.add(kbSearch, "kb://"+tn.name+"/search?q="+srcWords[r.IntN(len(srcWords))]).read(sensOf(r, 60, 40, 0, 0), bytesOf(r, 8000, 0.5), 1+int64(r.IntN(8)))
		case 1:
			p.add(ticketComments, ticket).read(sensOf(r, 0, 70, 30, 0), bytesOf(r, 3000, 0.9), 1+int64(r.IntN(6)))
		case 2:
			p.add(ordersLookup, "orders://"+tn.name+"/customer/"+itoa(int(cust))).read(pipeline.SensitivityConfidential, bytesOf(r, 2500, 0.7), 1+int64(r.IntN(5)))
		case 3:
			p.add(crmSearch, "crm://"+tn.name+"/contacts?email="+itoa(int(cust))).read(pipeline.SensitivityConfidential, bytesOf(r, 5000, 0.6), 1+int64(r.IntN(4)))
		case 4:
			if rolled {
				p.add(translateText, "translate://"+pick(r, []string{"de", "fr", "es", "ja", "pt"})).write(pipeline.SensitivityInternal, bytesOf(r, 1500, 0.5))
			} else {
				p.add(kbSearch, "kb://"+tn.name+"/articles/"+itoa(r.IntN(400))).read(sensOf(r, 60, 40, 0, 0), bytesOf(r, 6000, 0.5), 1)
			}
		default:
			p.add(crmLookup, contact).read(pipeline.SensitivityConfidential, bytesOf(r, 3000, 0.6), 1)
		}
	}
	p.add(ticketDraft, ticket).write(pipeline.SensitivityConfidential, bytesOf(r, 1800, 0.5))
	if refund {
		c := p.add(paymentsRefund, "payments://"+tn.name+"/orders/"+itoa(r.IntN(1000000))).write(pipeline.SensitivityConfidential, 300)
		c.approval = pipeline.ApprovalApproved
	}
	if send {
		dest := customer(tn, cust)
		size := bytesOf(r, 2500, 0.5)
		if r.Float64() < 0.04 { // an invoice or a screenshot attached
			size = bytesOf(r, 150_000, 0.8)
		}
		p.add(mailSend, "mail://"+tn.name+"/outbox").write(pipeline.SensitivityConfidential, size).dest = dest
	}
	if update {
		p.add(crmUpdate, contact).write(pipeline.SensitivityConfidential, bytesOf(r, 800, 0.5)).records = 1
	}
	p.add(ticketUpdate, ticket).write(pipeline.SensitivityInternal, bytesOf(r, 400, 0.4))
}

// planCoding: a coding task. Explore the repository, read docs on the web
// (untrusted), edit and run the tests in bursts until they pass (failed
// runs are errors), commit and push to the agent's remote; some tasks
// deploy to staging, a few to production with approval. Refactors touch
// 100–250 distinct files. 30–400 calls.
func planCoding(p *planner) {
	r, a := p.r, p.ag
	p.median, p.sigma = 5*time.Second, 0.9
	p.principal = pick(r, a.owners)
	rp := &a.repos[r.IntN(len(a.repos))]
	n := clampInt(lognorm(r, 90, 0.7), 30, 400)
	kind := weighted(r, 40, 30, 20, 10) // bugfix, feature, refactor, deploy
	deploy := kind == 3 || kind == 1 && r.Float64() < 0.2
	prod := deploy && r.Float64() < 0.25
	secret := prod && r.Float64() < 0.4
	switch {
	case r.Float64() < 0.15: // an interactive session: no declared task
	case deploy:
		p.scope = codingDeployScope
	default:
		p.scope = codingScope
	}
	// the files of the task: a hot set, or a wide slice for a refactor
	first := r.IntN(rp.files)
	width := 5 + r.IntN(20)
	if kind == 2 {
		width = 100 + r.IntN(150)
		n = max(n, width+60)
	}
	fileAt := func(i int) string { return rp.file((first + i) % rp.files) }
	for range 1 + r.IntN(3) {
		p.add(fsSearch, "/workspace/"+rp.name+"?q="+pick(r, srcWords)).read(pipeline.SensitivityInternal, bytesOf(r, 3000, 0.8), int64(1+r.IntN(40)))
	}
	reads := width
	if kind != 2 {
		reads = min(width, 3+r.IntN(10))
	}
	for i := range reads {
		p.add(fsRead, fileAt(i)).read(sensOf(r, 0, 97, 3, 0), bytesOf(r, 6000, 0.9), 0)
	}
	for range r.IntN(5) {
		site := pick(r, docSites)
		p.add(httpGet, "https://"+site+"/"+pick(r, srcWords)+"/"+itoa(r.IntN(5000))).read(pipeline.SensitivityPublic, bytesOf(r, 40_000, 1), 0)
	}
	tail := 3
	if deploy {
		tail += 3
	}
	failP := 0.6
	written := 0
	for len(p.calls) < n-tail {
		// read and edit a few files
		for range r.IntN(4) {
			p.add(fsRead, fileAt(r.IntN(width))).read(pipeline.SensitivityInternal, bytesOf(r, 6000, 0.9), 0)
		}
		edits := 1 + r.IntN(4)
		if kind == 2 {
			edits = 3 + r.IntN(8)
		}
		for range edits {
			i := r.IntN(width)
			if kind == 2 {
				i = written % width
				written++
			}
			p.add(fsWrite, fileAt(i)).write(pipeline.SensitivityInternal, bytesOf(r, 5000, 0.8))
		}
		if r.Float64() < 0.15 {
			p.add(httpGet, "https://"+pick(r, docSites)+"/q/"+itoa(r.IntN(100000))).read(pipeline.SensitivityPublic, bytesOf(r, 40_000, 1), 0)
		}
		// a burst of test runs, seconds apart; failures are errors
		fail := r.Float64() < failP
		for j := range 1 + r.IntN(5) {
			c := p.addAfter(between(r, 500*time.Millisecond, 4*time.Second), shellExec,
				pick(r, []string{"go test ./", "go vet ./", "go build ./", "make test PKG=./"})+srcDirs[(first+j)%len(srcDirs)]+"/...")
			c.write(pipeline.SensitivityInternal, bytesOf(r, 200, 0.5))
			c.in = bytesOf(r, 3000, 1.2)
			if fail && r.Float64() < 0.7 {
				c.outcome, c.errAttr = pipeline.OutcomeError, "exit status 1"
			}
		}
		failP *= 0.6
	}
	p.add(shellExec, "go test ./...").write(pipeline.SensitivityInternal, 20).in = bytesOf(r, 5000, 1)
	p.add(gitCommit, "git://"+rp.name+"/commits").write(pipeline.SensitivityInternal, bytesOf(r, 8000, 1))
	remote := rp.remote
	if r.Float64() < 0.01 { // a fork or a new mirror: a legitimate new destination
		remote = "https://git." + a.tenant.domain + "/forks/" + rp.name + "-" + itoa(r.IntN(1000)) + ".git"
	}
	p.add(gitPush, "git://"+rp.name+"/branches/"+pick(r, srcWords)+"-"+itoa(r.IntN(1000))).write(pipeline.SensitivityInternal, bytesOf(r, 30_000, 1)).dest = remote
	if deploy {
		c := p.add(deployRun, "deploy://"+rp.name+"/staging")
		c.write(pipeline.SensitivityInternal, bytesOf(r, 2000, 0.5))
		c.env = "staging"
		p.add(httpGet, "https://"+rp.name+".staging."+a.tenant.domain+"/healthz").read(pipeline.SensitivityInternal, 200, 0)
		if prod {
			if secret {
				c := p.add(secretsRead, "secrets://"+a.tenant.name+"/prod/"+rp.name+"/db-password").read(pipeline.SensitivityRestricted, 64, 1)
				c.env, c.approval = "prod", pipeline.ApprovalApproved
			}
			c := p.add(deployRun, "deploy://"+rp.name+"/prod")
			c.write(pipeline.SensitivityInternal, bytesOf(r, 2000, 0.5))
			c.env, c.approval = "prod", pipeline.ApprovalApproved
		}
	}
}

// planDataAdHoc: an analyst's question. Queries against the production
// warehouse (large results, heavy tail), objects from the data lake,
// notebooks and charts, a report, a post in a known channel. Analysts do
// not declare a task scope. Once in a while a big extract moves 5–10× the
// usual volume.
func planDataAdHoc(p *planner) {
	r, a := p.r, p.ag
	p.median, p.sigma = 12*time.Second, 0.9
	p.principal = pick(r, a.owners)
	n := clampInt(lognorm(r, 22, 0.6), 8, 80)
	big := 1.0
	if r.Float64() < 0.03 {
		big = 5 + 5*r.Float64()
	}
	dataQueries(p, n-2, big, 1)
	if r.Float64() < 0.6 {
		p.add(reportWrite, "s3://"+a.tenant.name+"-reports/adhoc/"+itoa(r.IntN(100000))+".md").write(pipeline.SensitivityConfidential, bytesOf(r, 20_000, 0.8))
	}
	if r.Float64() < 0.5 {
		ch := pick(r, a.channels)
		if r.Float64() < 0.03 { // a channel it never posted to: a legitimate new destination
			ch = "#proj-" + pick(r, srcWords) + "-" + itoa(r.IntN(100))
		}
		p.add(slackPost, "slack://"+a.tenant.name).write(pipeline.SensitivityInternal, bytesOf(r, 1500, 0.6)).dest = ch
	}
}

// planNightly: the data agent's scheduled job, at night by design: larger
// queries back to back, results written to the lake, a report and a post
// in the alerts channel. The job declares its scope.
func planNightly(p *planner) {
	r, a := p.r, p.ag
	p.median, p.sigma = 4*time.Second, 0.6
	p.principal = "svc-scheduler@" + a.tenant.domain
	p.scope = nightlyScope
	n := clampInt(lognorm(r, 30, 0.4), 15, 80)
	big := 2.0
	if r.Float64() < 0.05 {
		big = 10 + 10*r.Float64()
	}
	dataQueries(p, n-2, big, 2)
	p.add(reportWrite, "s3://"+a.tenant.name+"-reports/nightly/"+pick(r, warehouseTables)+".md").write(pipeline.SensitivityConfidential, bytesOf(r, 50_000, 0.6))
	p.add(slackPost, "slack://"+a.tenant.name).write(pipeline.SensitivityInternal, bytesOf(r, 800, 0.4)).dest = a.channels[0]
}

// dataQueries adds n warehouse and lake calls with volumes times big.
// mode 1: ad hoc (schema, queries, lake reads, notebooks, charts); mode 2:
// a job (queries, lake reads and writes).
func dataQueries(p *planner, n int, big float64, mode int) {
	r, a := p.r, p.ag
	tables := warehouseTables
	if mode == 1 {
		for range 1 + r.IntN(2) {
			p.add(dbSchema, "db://warehouse/"+pick(r, tables)).read(pipeline.SensitivityInternal, bytesOf(r, 3000, 0.5), 0).env = "prod"
		}
	}
	for len(p.calls) < n {
		var w [5]float64
		if mode == 1 {
			w = [5]float64{70, 15, 0, 10, 5}
		} else {
			w = [5]float64{70, 10, 20, 0, 0}
		}
		switch weighted(r, w[:]...) {
		case 0:
			rec := max(1, int64(lognorm(r, 2000, 1.5)*big*a.scale))
			c := p.add(dbQuery, "db://warehouse/"+pick(r, tables))
			c.read(sensOf(r, 0, 35, 55, 10), rec*int64(lognorm(r, 250, 0.3)), rec)
			c.env = "prod"
		case 1:
			p.add(s3Get, "s3://"+a.tenant.name+"-lake/"+pick(r, tables)+"/part-"+itoa(r.IntN(500))+".parquet").
				read(sensOf(r, 0, 50, 50, 0), int64(lognorm(r, 8e6, 1.2)*big*a.scale)+1, 0)
		case 2:
			p.add(s3Put, "s3://"+a.tenant.name+"-lake/derived/"+pick(r, tables)+"/"+itoa(r.IntN(1000))+".parquet").
				write(pipeline.SensitivityConfidential, int64(lognorm(r, 4e6, 1)*big*a.scale)+1)
		case 3:
			c := p.add(notebookRun, "notebook://"+a.name+"/cell-"+itoa(r.IntN(50)))
			c.write(pipeline.SensitivityInternal, bytesOf(r, 600, 0.5))
			if r.Float64() < 0.1 {
				c.outcome, c.errAttr = pipeline.OutcomeError, "python exception"
			}
		default:
			p.add(chartRender, "chart://"+a.name+"/"+itoa(r.IntN(1000))).write(pipeline.SensitivityInternal, bytesOf(r, 4000, 0.5))
		}
	}
}

// planOrchestrator: a task split over 2–5 sub-agents. Read memory, plan,
// spawn the sub-agents (each its own identity, instance and session),
// wait for them, collect their results, write the outcome and post a
// summary.
func planOrchestrator(p *planner) {
	r, a := p.r, p.ag
	p.median, p.sigma = 3*time.Second, 0.6
	p.principal = pick(r, a.owners)
	p.scope = orchestratorScope
	for range 1 + r.IntN(2) {
		p.add(memoryRead, "memory://"+a.name+"/"+pick(r, srcWords)).read(pipeline.SensitivityInternal, bytesOf(r, 2000, 0.6), 0)
	}
	p.add(planCreate, "plan://"+a.name).write(pipeline.SensitivityInternal, bytesOf(r, 1500, 0.5))
	var team []*role
	switch weighted(r, 45, 25, 20, 10) {
	case 0: // a research report
		team = []*role{researcherRole, writerRole, reviewerRole}
		if r.Float64() < 0.4 {
			team = append(team, researcherRole)
		}
	case 1: // a data question
		team = []*role{subAnalystRole, writerRole}
		if r.Float64() < 0.5 {
			team = append(team, reviewerRole)
		}
	case 2: // a code change
		team = []*role{subCoderRole, reviewerRole}
		if r.Float64() < 0.3 {
			team = append(team, researcherRole, writerRole)
		}
	default: // everything
		team = []*role{researcherRole, subAnalystRole, writerRole, reviewerRole, subCoderRole}
	}
	for _, ro := range team {
		spawn(p, ro)
	}
	p.addAfter(0, waitBarrier, "")
	for _, ro := range team {
		p.addAfter(between(r, 300*time.Millisecond, 2*time.Second), agentResult, "agent://"+a.name+"/sub/"+ro.name).read(pipeline.SensitivityInternal, bytesOf(r, 4000, 0.8), 0)
	}
	if r.Float64() < 0.7 {
		p.add(docsWrite, "docs://"+a.tenant.name+"/reports/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 12_000, 0.7))
	}
	if r.Float64() < 0.6 {
		p.add(slackPost, "slack://"+a.tenant.name).write(pipeline.SensitivityInternal, bytesOf(r, 1200, 0.5)).dest = pick(r, a.channels)
	} else {
		p.add(mailSend, "mail://"+a.tenant.name+"/outbox").write(pipeline.SensitivityInternal, bytesOf(r, 3000, 0.5)).dest = p.principal
	}
}

// spawn adds the agent.spawn call of a sub-agent and the marker that
// starts it.
func spawn(p *planner, ro *role) {
	p.addAfter(between(p.r, 300*time.Millisecond, 2*time.Second), agentSpawn, "agent://"+p.ag.name+"/sub/"+ro.name).write(pipeline.SensitivityInternal, bytesOf(p.r, 1000, 0.5))
	p.addAfter(0, spawnMarker, ro.name)
}

func planResearcher(p *planner) {
	r := p.r
	p.median, p.sigma = 4*time.Second, 0.7
	p.scope = names(webSearch, webFetch, notesWrite, agentSpawn)
	for range 1 + r.IntN(3) {
		p.add(webSearch, "https://search.example/?q="+pick(r, srcWords)+"+"+pick(r, repoNames)).read(pipeline.SensitivityPublic, bytesOf(r, 20_000, 0.5), 10)
	}
	for range 2 + r.IntN(9) {
		p.add(webFetch, "https://"+pick(r, webSites)+"/"+pick(r, srcWords)+"/"+itoa(r.IntN(100000))).read(pipeline.SensitivityPublic, bytesOf(r, 60_000, 1), 0)
	}
	if p.ag.depth < 2 && r.Float64() < 0.3 {
		spawn(p, fetcherRole)
		p.addAfter(0, waitBarrier, "")
	}
	p.add(notesWrite, "notes://"+p.ag.name+"/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 5000, 0.6))
}

func planFetcher(p *planner) {
	r := p.r
	p.median, p.sigma = 2*time.Second, 0.6
	p.scope = names(webFetch, notesWrite)
	for range 2 + r.IntN(5) {
		p.add(webFetch, "https://"+pick(r, webSites)+"/"+itoa(r.IntN(100000))).read(pipeline.SensitivityPublic, bytesOf(r, 60_000, 1), 0)
	}
	p.add(notesWrite, "notes://"+p.ag.name+"/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 3000, 0.6))
}

func planWriter(p *planner) {
	r, tn := p.r, p.ag.tenant
	p.median, p.sigma = 5*time.Second, 0.6
	p.scope = names(notesRead, docsRead, docsWrite)
	for range 1 + r.IntN(2) {
		p.add(notesRead, "notes://"+p.ag.parent.name+"/"+itoa(r.IntN(100000))).read(pipeline.SensitivityInternal, bytesOf(r, 5000, 0.6), 0)
	}
	for range 1 + r.IntN(4) {
		p.add(docsRead, "docs://"+tn.name+"/"+itoa(r.IntN(5000))).read(sensOf(r, 10, 80, 10, 0), bytesOf(r, 10_000, 0.8), 0)
	}
	for range 2 + r.IntN(5) {
		p.add(docsWrite, "docs://"+tn.name+"/drafts/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 6000, 0.7))
	}
}

func planReviewer(p *planner) {
	r, tn := p.r, p.ag.tenant
	p.median, p.sigma = 6*time.Second, 0.6
	p.scope = names(docsRead, docsComment)
	for range 2 + r.IntN(4) {
		p.add(docsRead, "docs://"+tn.name+"/drafts/"+itoa(r.IntN(100000))).read(pipeline.SensitivityInternal, bytesOf(r, 10_000, 0.6), 0)
	}
	for range 1 + r.IntN(3) {
		p.add(docsComment, "docs://"+tn.name+"/drafts/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 800, 0.6))
	}
}

func planSubAnalyst(p *planner) {
	r := p.r
	p.median, p.sigma = 6*time.Second, 0.7
	p.scope = names(dbQuery, notesWrite)
	for range 2 + r.IntN(7) {
		rec := max(1, int64(lognorm(r, 500, 1.2)))
		c := p.add(dbQuery, "db://warehouse/"+pick(r, warehouseTables))
		c.read(sensOf(r, 0, 50, 45, 5), rec*int64(lognorm(r, 250, 0.3)), rec)
		c.env = "prod"
	}
	p.add(notesWrite, "notes://"+p.ag.name+"/"+itoa(r.IntN(100000))).write(pipeline.SensitivityInternal, bytesOf(r, 3000, 0.6))
}

func planSubCoder(p *planner) {
	r := p.r
	p.median, p.sigma = 3*time.Second, 0.7
	p.scope = names(fsRead, fsWrite, shellExec)
	rp := &p.ag.repos[r.IntN(len(p.ag.repos))]
	first := r.IntN(rp.files)
	for i := range 4 + r.IntN(17) {
		p.add(fsRead, rp.file((first+i%12)%rp.files)).read(pipeline.SensitivityInternal, bytesOf(r, 6000, 0.9), 0)
	}
	for range 1 + r.IntN(5) {
		p.add(fsWrite, rp.file((first+r.IntN(12))%rp.files)).write(pipeline.SensitivityInternal, bytesOf(r, 5000, 0.8))
	}
	fail := r.Float64() < 0.4
	for range 1 + r.IntN(4) {
		c := p.addAfter(between(r, 500*time.Millisecond, 3*time.Second), shellExec, "go test ./"+pick(r, srcDirs)+"/...")
		c.write(pipeline.SensitivityInternal, 30)
		if fail {
			c.outcome, c.errAttr = pipeline.OutcomeError, "exit status 1"
			fail = r.Float64() < 0.5
		}
	}
}
