-- Latest progress report of the job's current lease (neuron progress frames).
ALTER TABLE jobs ADD COLUMN progress TEXT;
