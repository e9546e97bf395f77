package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/internal/browser"
	"github.com/ohms-project/adaptq/workflows"
)

// TestWebUI runs the main job on the embedded default and looks at it in
// the Web UI the embedded server serves, in a real headless Chromium: the
// run list filtered by a visibility query on AdaptqModel finds the run, its
// search attributes and memo are shown, and the progress query answers
// from the Queries tab. Screenshots are kept under artifacts/TestWebUI/.
func TestWebUI(t *testing.T) {
	bctx := browser.New(t, 4*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dev, c := startEmbeddedServer(t, ctx)
	if dev.UIAddress() == "" {
		t.Fatal("the embedded server serves no Web UI")
	}
	out := t.TempDir()
	in := workflows.QuantizeInput{Model: absLocation(fixtureF32), Output: out, Recipe: "q8_0"}
	id := fmt.Sprintf("webui-test-%d", time.Now().UnixNano())
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrModel.ValueSet(in.Model), workflows.AttrRecipe.ValueSet(in.Recipe))},
		workflows.QuantizeModel, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	base := dev.UIAddress() + "/namespaces/" + dev.Namespace() + "/workflows"
	runPage := base + "/" + id + "/" + run.GetRunID()

	// The run list, filtered as an operator would: by the model.
	list := base + "?query=" + url.QueryEscape(`AdaptqModel="`+in.Model+`"`)
	t.Logf("run list: %s", list)
	waitText(t, bctx, list, id, "QuantizeModel", "1 COMPLETED")
	browser.Screenshot(t, bctx, "runs.png")

	// Another model's filter does not list it: the list is the query's.
	waitText(t, bctx, base+"?query="+url.QueryEscape(`AdaptqModel="no-such-model"`), "No Workflows")
	if txt := pageText(t, bctx); strings.Contains(txt, id) {
		t.Errorf("a filter on another model lists %s", id)
	}

	waitText(t, bctx, runPage+"/search-attributes",
		`"AdaptqModel": "`+in.Model+`"`, `"AdaptqRecipe": "q8_0"`, `"AdaptqPhase": "done"`)
	browser.Screenshot(t, bctx, "search-attributes.png")
	waitText(t, bctx, runPage+"/memo", `"output": "`+out+`"`)

	// The Queries tab offers the progress query first; run it.
	waitText(t, bctx, runPage+"/query", "Run Query")
	if v, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#query-select')?.value ?? ''`)); err != nil || v != workflows.ProgressQuery {
		t.Fatalf("the query selected is %q (%v), want %q", v, err, workflows.ProgressQuery)
	}
	click := `(() => { const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Run Query'); if (!b) return false; b.click(); return true })()`
	if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](click)); err != nil || !ok {
		t.Fatalf("click Run Query: %v (button found: %v)", err, ok)
	}
	pollText(t, bctx, `"phase": "done"`, `"shards_done": 7`, `"shards_total": 7`)
	browser.Screenshot(t, bctx, "progress-query.png")
}

// waitText opens page and waits until its text holds every want.
func waitText(t *testing.T, ctx context.Context, page string, want ...string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	pollText(t, ctx, want...)
}

// pollText waits up to a minute until the page's text holds every want.
func pollText(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	var js strings.Builder
	js.WriteString("(() => { const s = document.body.innerText; return true")
	for _, w := range want {
		fmt.Fprintf(&js, " && s.includes(%q)", w)
	}
	js.WriteString(" })()")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js.String(), chromedp.WithPollingTimeout(time.Minute))); err != nil {
		txt := pageText(t, ctx)
		t.Fatalf("the page does not show %q: %v\npage text:\n%s", want, err, txt)
	}
}

// pageText is the text of the open page.
func pageText(t *testing.T, ctx context.Context) string {
	t.Helper()
	txt, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return txt
}
