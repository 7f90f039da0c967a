"""Live integrations: the analyzer inside training loops (analyzer/live.py), and adapters for libraries'
own logging hooks. Each adapter follows its library's protocol by duck typing and never imports the
library, so the analyzer keeps no dependency on it (docs/plugins.md, "Live diagnosis")."""
