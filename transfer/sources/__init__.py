"""Where the inputs come from: the dataset archive and the backbone weights, downloaded, copied or generated."""
