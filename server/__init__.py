"""serve.py's web server: the app (the JSON API's routes and the page) and the guards in front of it
(upload, header and reading deadlines, connection limits, limited restarts). It stands on the reader
and the ground floor."""
