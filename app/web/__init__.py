"""The pages people work in: static HTML and JavaScript modules over the public API."""
