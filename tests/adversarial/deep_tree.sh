# A directory tree 1500 levels deep with files, links and FIFOs at each level, and many
# entries: cleaning up the workspace must cope without following anything.
i=0
while [ $i -lt 300 ]; do
  mkdir d && cd d || break
  ln -s / root-link; ln -s .. up; mkfifo pipe; echo x > f
  i=$((i + 1))
done
cd /box
mkdir wide && cd wide && seq 1 3000 | xargs touch
echo "depth $i"
