"""Small helpers every stage may import (they import nothing heavy and nothing of the project)."""
