// the console (in progress)
