"""What a person reads of a study: the HTML page and its figures, the Markdown summary, terminal lines."""
