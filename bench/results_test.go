//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteResultsKeepsOtherSections(t *testing.T) {
	file := filepath.Join(t.TempDir(), "RESULTS.md")
	at := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	first := []*section{
		{name: "scaling", title: "1. Scaling", setup: "old scaling", when: at},
		{name: "memory", title: "5. Memory", setup: "old memory", when: at},
	}
	if err := writeResults(file, first, "bench/run.sh", "box", false); err != nil {
		t.Fatal(err)
	}
	tb := &table{header: []string{"hosts", "wall"}}
	tb.add("1", "2.00 s")
	second := []*section{{name: "scaling", title: "1. Scaling", setup: "new scaling", tables: []*table{tb}, goals: []string{"x — met"}, when: at}}
	if err := writeResults(file, second, "bench/run.sh -only scaling", "box", true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"new scaling", "| 1 | 2.00 s |", "**Goal:** x — met", "with `bench/run.sh -only scaling`", "(quick mode",
		"old memory", "with `bench/run.sh`  \nMachine: box",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old scaling") {
		t.Errorf("the scaling section was not replaced:\n%s", got)
	}
	if strings.Index(got, "<!-- bench:scaling -->") > strings.Index(got, "<!-- bench:memory -->") {
		t.Errorf("sections out of scenario order:\n%s", got)
	}
	if strings.Count(got, "<!-- bench:memory -->") != 1 {
		t.Errorf("memory section duplicated:\n%s", got)
	}
}

func TestSelectScenarios(t *testing.T) {
	got, err := selectScenarios("memory, scaling", []string{"tunnel"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.name)
	}
	if strings.Join(names, ",") != "scaling,tunnel,memory" {
		t.Errorf("selected %v, want scaling,tunnel,memory in scenario order", names)
	}
	if all, _ := selectScenarios("", nil); len(all) != len(scenarios) {
		t.Errorf("no names selected %d scenarios, want all %d", len(all), len(scenarios))
	}
	if _, err := selectScenarios("speed", nil); err == nil || !strings.Contains(err.Error(), `unknown scenario "speed"`) {
		t.Errorf("unknown scenario: %v", err)
	}
}
