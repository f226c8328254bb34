"""The triage console (pages in `rarenet serve`) and `rarenet report` (the same views in
one self-contained HTML file). views: store → typed values; plots: inline SVG; render:
the templates; web: routes, sessions, CSRF; report: the file."""
