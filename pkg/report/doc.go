// Package report renders plans and deploy reports: as text for a terminal
// or a CI log, as Markdown for a job summary or a pull request comment,
// and as JSON.
//
// Names and messages come from nodes, builds and pull requests, so they are
// data at every sink: text renderers pass them through clean (no control
// characters or escape sequences), Markdown renderers through the toolkit
// in markdown.go (no markup, mentions or links), and every Markdown
// rendering fits its size limit the one way shorten.go describes.
package report
