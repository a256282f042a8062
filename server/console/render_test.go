package console

import (
	"strings"
	"testing"
	"time"
)

func TestPagesParse(t *testing.T) {
	p := parsePages()
	for name := range titles {
		if p[name] == nil {
			t.Errorf("no template for %s", name)
		}
	}
}

func TestRenderSignIn(t *testing.T) {
	p := parsePages()
	var b strings.Builder
	if err := p["signin"].ExecuteTemplate(&b, "layout.html", frame{Title: "x", Data: struct {
		Message string
		CSRF    string
		Lasts   time.Duration
	}{"m", "c", time.Hour}}); err != nil {
		t.Fatal(err)
	}
}
