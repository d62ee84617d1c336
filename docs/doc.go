// Package docs holds Tern's design notes and reference (Markdown, the
// admin API's OpenAPI file). It has no code: its tests keep the documents
// honest, e.g. every relative link resolves inside the repository.
package docs
